"""Compare the classical click tools (`graphcut`, `growcut`, `watershed`) under the standard evaluation protocol.

Protocol: the simulated annotator (`SimulatedPolicy`, no stop IoU) clicks 20 times on each
MNI152 slice and every proposal is accepted; the IoU after each click is recorded. Starts: from
scratch (no mask) and from each `rough_mask` kind (eroded, cut, leaky). Reported per tool and
start: NoC@85 and NoC@90 (20 when never reached), mIoU after 1, 3 and 5 clicks, and the median
seconds per click (predict only).

Slices: tissues brain, grey, white x planes axial, coronal, sagittal x slice indices at the
brain's centre and +-``OFFSET`` voxels (``--quick``: the centre only).

    python benchmarks/compare_classical_tools.py [--quick] [--tools graphcut growcut]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

from ibisagent.evaluate import run_case, summarise  # noqa: E402
from ibisagent.imaging import to_rgb  # noqa: E402
from ibisagent.sample_data import PLANES, TISSUES, centre_index, display_slice, mni152_volume, rough_mask  # noqa: E402
from ibisagent.segmenters import build_segmenter  # noqa: E402

MAX_CLICKS = 20
OFFSET = 12
STARTS = ("scratch", "eroded", "cut", "leaky")


def slice_set(quick: bool) -> List[tuple]:
    """[(name, float image (H, W), truth bool (H, W))] in display orientation."""
    cases = []
    for tissue in TISSUES:
        t1, mask, _ = mni152_volume(tissue)
        for plane in PLANES:
            centre = centre_index(mask, plane)
            for index in ([centre] if quick else [centre - OFFSET, centre, centre + OFFSET]):
                truth = display_slice(mask, plane, index)
                if truth.sum() < 50:
                    continue
                cases.append((f"{tissue}/{plane}/{index}", display_slice(t1, plane, index), truth))
    return cases


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="centre slices only")
    parser.add_argument("--tools", nargs="+", default=["graphcut", "growcut"])
    parser.add_argument("--starts", nargs="+", default=list(STARTS), choices=STARTS)
    args = parser.parse_args(argv)

    cases = slice_set(args.quick)
    print(f"{len(cases)} slices, starts: {', '.join(args.starts)}, {MAX_CLICKS} clicks each")
    header = f"{'tool':8} {'start':8} {'NoC@85':>7} {'NoC@90':>7} {'mIoU@1':>7} {'mIoU@3':>7} {'mIoU@5':>7} {'s/click':>8}"
    rows = []
    started = time.perf_counter()
    for tool in args.tools:
        segmenter = build_segmenter(tool)
        pooled = []
        for start in args.starts:
            results = [
                run_case(name, to_rgb(image), truth, segmenter, clicks=MAX_CLICKS,
                         initial=None if start == "scratch" else rough_mask(truth, start))
                for name, image, truth in cases
            ]
            rows.append((tool, start, summarise(results, MAX_CLICKS)))
            pooled += results
        rows.append((tool, "all", summarise(pooled, MAX_CLICKS)))
    print(header)
    for tool, start, figures in rows:
        print(
            f"{tool:8} {start:8} {figures['noc@85']:7.2f} {figures['noc@90']:7.2f} {figures['miou@1']:7.3f}"
            f" {figures['miou@3']:7.3f} {figures['miou@5']:7.3f} {figures['seconds_per_click']:8.4f}"
        )
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
