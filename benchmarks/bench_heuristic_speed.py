"""Time one proposal of the weight-free `heuristic` policy at 256, 512 and 1024 pixels, against a
baseline measured in the same run.

The image is an MNI152 white-matter axial slice upsampled with PIL (bicubic; the truth with
nearest neighbour), the mask a realistic rough first attempt (`sample_data.rough_mask`, "leaky"
by default: a dilated mask with a blob spilling out, so the policy has work to do). Each repeat
asks the same policy for the next click on the same image and mask, as an episode does between
clicks; the first call (which fills any per-image cache) is reported separately as "first".
The baseline is one ``scipy.ndimage.distance_transform_edt`` of the mask at the same size, a
single whole-image pass of the kind the policy needs a few of; the ratio says how many such
passes one proposal costs, and makes numbers from different machines comparable. Goal: median
at most 40 ms at 512 x 512 on a 2-core CPU, and time growing about linearly with pixel count.

    python benchmarks/bench_heuristic_speed.py [--repeats 15] [--rough leaky] [--profile 512]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402

from ibisagent.actions import parse_response  # noqa: E402
from ibisagent.imaging import to_rgb  # noqa: E402
from ibisagent.policies import build_policy  # noqa: E402
from ibisagent.policies.base import Observation  # noqa: E402
from ibisagent.sample_data import ROUGHNESS, mni152_slice, rough_mask  # noqa: E402

SIZES = (256, 512, 1024)


def sample(size: int, rough: str):
    """(RGB uint8 (size, size, 3), rough mask bool (size, size))."""
    image, truth = mni152_slice("white", "axial")
    rgb = np.asarray(Image.fromarray(to_rgb(image)).resize((size, size), Image.BICUBIC))
    big = np.asarray(Image.fromarray(truth.astype(np.uint8) * 255).resize((size, size), Image.NEAREST)) > 127
    return np.ascontiguousarray(rgb), rough_mask(big, rough)


def timed(function, repeats: int) -> np.ndarray:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return np.array(times) * 1000.0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--rough", default="leaky", choices=ROUGHNESS)
    parser.add_argument("--profile", type=int, default=0, help="also print a cProfile of this size")
    args = parser.parse_args(argv)

    print(f"heuristic proposal time, rough mask {args.rough!r}, {args.repeats} repeats (ms)")
    print(f"{'size':>6}{'first':>9}{'median':>9}{'p95':>9}{'baseline':>10}{'ratio':>8}  answer")
    for size in SIZES:
        image, mask = sample(size, args.rough)
        policy = build_policy("heuristic")
        observation = Observation(image, mask, "Segment the white matter.", 1, ())
        first = timed(lambda: policy.respond(observation), 1)[0]
        times = timed(lambda: policy.respond(observation), args.repeats)
        base = float(np.median(timed(lambda: ndimage.distance_transform_edt(mask), args.repeats)))
        median, p95 = float(np.median(times)), float(np.percentile(times, 95))
        answer = parse_response(policy.respond(observation)).action
        print(f"{size:>6}{first:9.1f}{median:9.1f}{p95:9.1f}{base:10.1f}{median / base:8.1f}  {answer}", flush=True)
        if size == args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.runcall(lambda: [policy.respond(observation) for _ in range(5)])
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
