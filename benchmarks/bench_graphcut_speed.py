"""Time the `sitk` tool on a 512 x 512 image: embedding once, then each click of a simulated
episode (predict only), against a baseline measured in the same run.

The image is an MNI152 white-matter axial slice upsampled to 512 x 512 with PIL (bicubic; the
truth with nearest neighbour). The simulated annotator clicks 20 times from scratch and the time
of each `predict` is recorded. The baseline is ``np.copy`` of a 512 x 512 mask, the least any
tool must do per click; the ratio says how many baseline copies one click costs. Goal: median
per-click time at most 150 ms on a 2-core CPU.

    python benchmarks/bench_sitk_speed.py [--tool sitk] [--repeats 3]
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

from ibisagent.episode import Episode  # noqa: E402
from ibisagent.imaging import to_rgb  # noqa: E402
from ibisagent.metrics import iou  # noqa: E402
from ibisagent.policies.simulated import SimulatedPolicy  # noqa: E402
from ibisagent.sample_data import mni152_slice  # noqa: E402
from ibisagent.segmenters import build_segmenter  # noqa: E402

SIZE = 512
CLICKS = 20


def sample_512():
    """(RGB uint8 (512, 512, 3), truth bool (512, 512))."""
    image, truth = mni152_slice("white", "axial")
    rgb = np.asarray(Image.fromarray(to_rgb(image)).resize((SIZE, SIZE), Image.BICUBIC))
    big_truth = np.asarray(Image.fromarray(truth.astype(np.uint8) * 255).resize((SIZE, SIZE), Image.NEAREST)) > 127
    return np.ascontiguousarray(rgb), big_truth


def baseline_seconds(mask: np.ndarray, repeats: int = 200) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        np.copy(mask)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool", default="sitk")
    parser.add_argument("--repeats", type=int, default=3, help="episodes, each on a fresh tool")
    args = parser.parse_args(argv)

    image, truth = sample_512()
    embed_times, click_times, final_ious = [], [], []
    for _ in range(args.repeats):
        tool = build_segmenter(args.tool)
        started = time.perf_counter()
        tool.set_image(image)
        embed_times.append(time.perf_counter() - started)
        episode = Episode(image, tool, SimulatedPolicy(truth), max_steps=CLICKS, image_is_set=True)
        result = episode.run()
        click_times += [step.seconds for step in result.steps]
        final_ious.append(iou(result.mask, truth))
    base = baseline_seconds(truth)
    median, p95 = np.median(click_times), np.percentile(click_times, 95)
    print(f"{args.tool} on {SIZE}x{SIZE}, {len(click_times)} clicks in {args.repeats} episodes")
    print(f"embed        median {1000 * np.median(embed_times):8.1f} ms")
    print(f"per click    median {1000 * median:8.1f} ms   p95 {1000 * p95:8.1f} ms")
    print(f"baseline     np.copy of the mask {1e6 * base:8.1f} us   per-click/baseline = {median / base:,.0f}x")
    print(f"IoU after {CLICKS} clicks: {np.mean(final_ious):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
