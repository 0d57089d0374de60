"""Time the CPU default click tool (`graphcut`) per click at 512 px on one core, against Grow
from seeds (`growcut`, Slicer's own click-free tool) on the same clicks in the same run.

Cases: the dev set's 2D images whose larger side is 512 px (every ``--every``-th of them), both
scenarios (from scratch, continue from the degraded start), the simulated annotator clicking
``--clicks`` times. Without the dev set, the MNI152 white-matter slice upsampled to 512 px
stands in (printed). Only `predict` is timed (per click); `set_image` once per case is reported
apart. Goal: at most 150 ms per click at 512 x 512 on one core (median and p95 are printed;
big objects such as both lungs are the slow end).

    python benchmarks/bench_graphcut_speed.py [--every 2] [--clicks 20] [--tool graphcut] [--baseline growcut]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

import numpy as np  # noqa: E402

from ibisagent import image_io  # noqa: E402
from ibisagent.evaluate import run_case  # noqa: E402
from ibisagent.imaging import to_rgb  # noqa: E402
from ibisagent.segmenters import DEFAULT_SEGMENTER, build_segmenter  # noqa: E402

DEVSET_2D = Path(__file__).resolve().parents[2] / "shared" / "data" / "devset" / "2d"
SIZE = 512

Case = Tuple[str, np.ndarray, np.ndarray, Optional[np.ndarray]]


def devset_cases(folder: Path, every: int) -> List[Case]:
    """(name, RGB, truth, degraded start) of the dev-set images of larger side `SIZE`."""
    cases = []
    for path in sorted((folder / "images").glob("*.png")):
        pixels, _ = image_io.read_2d(str(path))
        if max(pixels.shape[:2]) != SIZE:
            continue
        rgb = to_rgb(pixels)
        truth = image_io.read_mask_2d(str(folder / "masks" / path.name), rgb.shape[:2])
        start = image_io.read_mask_2d(str(folder / "initial" / path.name), rgb.shape[:2])
        cases.append((path.stem, rgb, truth, start))
    return cases[::every]


def mni_case() -> List[Case]:
    from PIL import Image

    from ibisagent.sample_data import mni152_slice

    image, truth = mni152_slice("white", "axial")
    rgb = np.asarray(Image.fromarray(to_rgb(image)).resize((SIZE, SIZE), Image.BICUBIC))
    big = np.asarray(Image.fromarray(truth.astype(np.uint8) * 255).resize((SIZE, SIZE), Image.NEAREST)) > 127
    return [("mni_white", np.ascontiguousarray(rgb), big, None)]


def click_times(tool_name: str, cases: List[Case], clicks: int) -> Dict[str, List[float]]:
    """Seconds of every click and of every `set_image`, over both scenarios of every case."""
    tool = build_segmenter(tool_name)
    out: Dict[str, List[float]] = {"click": [], "embed": []}
    for name, rgb, truth, start in cases:
        for initial in (None, start) if start is not None else (None,):
            began = time.perf_counter()
            result = run_case(name, rgb, truth, tool, clicks=clicks, initial=initial)
            out["click"] += result.seconds
            out["embed"].append(time.perf_counter() - began - sum(result.seconds))
    return out


def describe(label: str, times: Dict[str, List[float]]) -> str:
    ms = 1000 * np.asarray(times["click"])
    return (f"{label:10} {ms.size:5d} clicks  median {np.median(ms):7.1f}  p90 {np.percentile(ms, 90):7.1f}  "
            f"p95 {np.percentile(ms, 95):7.1f}  max {ms.max():7.1f} ms   "
            f"(set_image + episode overhead median {1000 * np.median(times['embed']):.0f} ms per case)")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool", default=DEFAULT_SEGMENTER)
    parser.add_argument("--baseline", default="growcut", help="tool timed on the same cases ('' for none)")
    parser.add_argument("--every", type=int, default=2, help="use every n-th 512-px dev-set case")
    parser.add_argument("--clicks", type=int, default=20)
    args = parser.parse_args(argv)

    if (DEVSET_2D / "images").is_dir():
        cases = devset_cases(DEVSET_2D, args.every)
        print(f"{len(cases)} dev-set cases at {SIZE} px, scratch and continue, {args.clicks} clicks each")
    else:
        cases = mni_case()
        print(f"dev set not found at {DEVSET_2D}: timing the MNI152 white-matter slice at {SIZE} px instead")
    tool = click_times(args.tool, cases, args.clicks)
    print(describe(args.tool, tool))
    if args.baseline:
        try:
            base = click_times(args.baseline, cases, args.clicks)
        except (ImportError, ValueError) as error:
            print(f"baseline {args.baseline} not run: {error}")
        else:
            print(describe(args.baseline, base))
            ratio = np.median(tool["click"]) / np.median(base["click"])
            print(f"median per click {args.tool}/{args.baseline} = {ratio:.2f}")
    median = 1000 * np.median(tool["click"])
    print(f"goal: <= 150 ms per click at {SIZE} px -> median {median:.0f} ms: {'PASS' if median <= 150 else 'FAIL'}; "
          f"p95 {1000 * np.percentile(tool['click'], 95):.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
