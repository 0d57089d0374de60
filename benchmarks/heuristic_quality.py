"""Does the weight-free `heuristic` policy improve rough masks on real data under its own clicks?

Cases: the nilearn MNI152 T1 template, tissues brain/grey/white x planes axial/coronal/sagittal
(middle slices), starting from the rough masks of `sample_data.rough_mask` (eroded, cut, leaky)
and from the ground truth itself ("truth": a good mask the policy should leave alone). Every
proposal is accepted unchanged, up to --steps steps. The policy never sees the ground truth; the
IoU against it is measured before and after.

The clicks go to the classical `graphcut` tool by default (any registered tool can be named).

Run:  python benchmarks/heuristic_quality.py [--steps 8] [--segmenter graphcut]
Prints one row per case (start IoU, end IoU, steps, stop reason) and a summary: mean IoU gain
and the share of rough starts improved, and how often a good mask was damaged.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np
from ibisagent.episode import Episode
from ibisagent.imaging import to_rgb
from ibisagent.metrics import iou
from ibisagent.policies import build_policy
from ibisagent.sample_data import PLANES, ROUGHNESS, TISSUES, mni152_slice, rough_mask
from ibisagent.segmenters import build_segmenter

STARTS = ROUGHNESS + ("truth",)


@dataclass
class Row:
    case: str
    start: str
    start_iou: float
    end_iou: float
    steps: int
    stop: str | None


def run_case(image_rgb, truth, start_mask, segmenter, policy, steps) -> tuple:
    episode = Episode(image_rgb, segmenter, policy, "Segment the target.", start_mask, max_steps=steps)
    result = episode.run()
    return iou(result.mask, truth), len(result.steps), result.stop_reason


def run(steps: int = 8, segmenter_name: str = "graphcut", out=sys.stdout) -> list[Row]:
    segmenter = build_segmenter(segmenter_name)
    policy = build_policy("heuristic")
    print(f"policy: {policy.description}\ntool: {segmenter.name} ({segmenter.description})\n", file=out)
    print(f"{'case':<18}{'start':<8}{'IoU0':>7}{'IoU1':>7}{'gain':>8}{'steps':>6}  stop", file=out)
    rows = []
    for tissue in TISSUES:
        for plane in PLANES:
            image, truth = mni152_slice(tissue, plane)
            rgb = to_rgb(image)
            for start in STARTS:
                start_mask = truth.copy() if start == "truth" else rough_mask(truth, start)
                end, count, stop = run_case(rgb, truth, start_mask, segmenter, policy, steps)
                row = Row(f"{tissue}/{plane}", start, iou(start_mask, truth), end, count, stop)
                rows.append(row)
                print(
                    f"{row.case:<18}{row.start:<8}{row.start_iou:7.3f}{row.end_iou:7.3f}"
                    f"{row.end_iou - row.start_iou:+8.3f}{row.steps:6d}  {row.stop}", file=out, flush=True,
                )
    summarise(rows, out)
    return rows


def summarise(rows: list[Row], out=sys.stdout) -> None:
    rough = [r for r in rows if r.start != "truth"]
    good = [r for r in rows if r.start == "truth"]
    gains = np.array([r.end_iou - r.start_iou for r in rough])
    print(f"\nrough starts: {len(rough)} cases, mean IoU {np.mean([r.start_iou for r in rough]):.3f} -> "
          f"{np.mean([r.end_iou for r in rough]):.3f} (gain {gains.mean():+.3f}); improved "
          f"{np.mean(gains > 0.001):.0%}, worse {np.mean(gains < -0.001):.0%}, mean steps "
          f"{np.mean([r.steps for r in rough]):.1f}", file=out)
    for kind in ROUGHNESS:
        part = np.array([r.end_iou - r.start_iou for r in rough if r.start == kind])
        if part.size == 0:
            continue
        print(f"  {kind:<7} gain {part.mean():+.3f}, improved {np.mean(part > 0.001):.0%}", file=out)
    drops = np.array([r.start_iou - r.end_iou for r in good])
    if drops.size == 0:
        return
    print(f"truth starts: {len(good)} cases, terminated at once {np.mean([r.steps == 0 for r in good]):.0%}, "
          f"IoU dropped in {np.mean(drops > 0.001):.0%} (mean drop {drops.mean():.3f}, worst {drops.max():.3f})",
          file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="most clicks per case (default 8)")
    parser.add_argument("--segmenter", default="graphcut", help="segmentation tool name (default graphcut)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    run(args.steps, args.segmenter)
    print(f"\n{time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
