"""Quality of every CPU-usable tool under the `ibisagent eval` protocol, with Slicer's "Grow
from seeds" (FastGrowCut, PyPI itk-growcut: the `growcut` tool) as the peer in the same run.

Protocol (`ibisagent.evaluate.run_case` / `summarise`, the RITM/SimpleClick NoC protocol): the
simulated annotator clicks 20 times on each MNI152 slice and every click is applied; the IoU
after each click is recorded. Starts: from scratch, and "continue my mask" from each rough mask
of `sample_data.rough_mask` (eroded, cut, leaky). Reported per tool and start: NoC@85, NoC@90,
mIoU@1/3/5, the median seconds per click, and the IoU-vs-clicks curves.

Slices: `bench_common.slice_set` (tissues x planes, centre +- 12 voxels;
``--quick``: the centre axial slices of brain and white matter, starts scratch and cut).

    python benchmarks/bench_quality.py [--quick] [--tools graphcut growcut litemedsam]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Dict, List, Optional, Sequence

import bench_common as common
import numpy as np
from bench_common import format_table, slice_set

from ibisagent.evaluate import run_case, summarise
from ibisagent.imaging import to_rgb
from ibisagent.sample_data import ROUGHNESS, rough_mask
from ibisagent.segmenters import build_segmenter

CLICKS = 20
TOOLS = ("graphcut", "growcut", "litemedsam")
STARTS = ("scratch",) + ROUGHNESS
COLUMNS = ("tool", "start", "cases", "noc@85", "noc@90", "miou@1", "miou@3", "miou@5", "start_iou", "s_per_click")


def cases(quick: bool) -> List[tuple]:
    every = slice_set(quick)
    return [c for c in every if "/axial/" in c[0] and not c[0].startswith("grey")] if quick else every


def run(tools: Sequence[str] = TOOLS, starts: Sequence[str] = STARTS, quick: bool = False) -> Dict:
    chosen = cases(quick)
    rows, curves = [], {}
    for tool in tools:
        segmenter = build_segmenter(tool)
        for start in starts:
            started = time.perf_counter()
            results = []
            for name, image, truth in chosen:
                initial = None if start == "scratch" else rough_mask(truth, start)
                results.append(run_case(name, to_rgb(image), truth, segmenter, clicks=CLICKS, initial=initial))
            summary = summarise(results, CLICKS)
            rows.append({"tool": tool, "start": start, **summary,
                         "start_iou": round(float(np.mean([r.start_iou for r in results])), 4),
                         "s_per_click": summary["seconds_per_click"],
                         "wall_s": round(time.perf_counter() - started, 1)})
            curves[f"{tool}/{start}"] = [round(float(v), 4) for v in np.mean([r.ious for r in results], axis=0)]
    return {"clicks": CLICKS, "cases": [c[0] for c in chosen], "rows": rows, "curves": curves}


def plot(result: Dict, out_dir: str) -> List[str]:
    """One IoU-vs-clicks panel per start, one line per tool."""
    starts = sorted({k.split("/")[1] for k in result["curves"]}, key=STARTS.index)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes_list = pyplot.subplots(1, len(starts), figsize=(4.0 * len(starts), 3.6), dpi=100, squeeze=False)
    for axes, start in zip(axes_list[0], starts):
        for key, values in result["curves"].items():
            tool, this_start = key.split("/")
            if this_start == start:
                axes.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=tool)
        for level in (0.85, 0.9):
            axes.axhline(level, color="lightgrey", linewidth=0.8)
        axes.set_title(f"start: {start}")
        axes.set_xlabel("clicks")
        axes.set_ylim(0, 1)
        axes.grid(alpha=0.3)
    axes_list[0][0].set_ylabel("mean IoU")
    axes_list[0][-1].legend(loc="lower right")
    return [common.save_figure(figure, "quality_iou_vs_clicks.png", out_dir)]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tools", nargs="+", default=list(TOOLS))
    parser.add_argument("--starts", nargs="+", choices=STARTS)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    starts = args.starts or (("scratch", "cut") if args.quick else STARTS)
    result = run(args.tools, starts, args.quick)
    print(format_table(result["rows"], COLUMNS, f"quality, {len(result['cases'])} MNI152 slices, {CLICKS} clicks"))
    common.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
