"""Seconds per click of the 3D click tools on ONE core, for a 240 x 240 x 155 volume, with 3D
Grow from seeds (the peer) timed in the same run.

The volume is a real BraTS 2013 FLAIR of the dev set (``--devset``, 240 x 240 x 155 at 1 mm) and
its whole tumour; without the dev set, a synthetic volume of the same size (a noisy bright
ellipsoid). Each tool runs the CVPR 2025 protocol (`ibisagent.cvpr25.run_case`: box start, and
the volume's rough start, then 5 clicks), ``--repeats`` times; every ``predict`` after a click is
timed (the start is timed apart). The process is pinned to one CPU and its numeric libraries to
one thread before they load. Goal (issue 19): median <= 1 s per click.

    python benchmarks/bench_click3d_speed.py [--tools graphcut3d growcut3d] [--repeats 1]
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
    os.environ[_variable] = "1"
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import bench_common as common  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from bench_common import format_table  # noqa: E402

from ibisagent import cvpr25  # noqa: E402
from ibisagent.segmenters import build_volume_segmenter  # noqa: E402

DEVSET = common.DEVSET_3D
CASE = "mri_brats2013_pat0001"
SHAPE = (155, 240, 240)
GOAL_SECONDS = 1.0


def load(devset: str):
    """(name, volume [k, j, i], spacing, truth, rough start) of the timed volume."""
    path = os.path.join(devset, f"{CASE}_image.nii.gz")
    if os.path.isfile(path):
        image = sitk.ReadImage(path)
        truth = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(devset, f"{CASE}_label.nii.gz"))) > 0
        start = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(devset, f"{CASE}_initial.nii.gz"))) > 0
        return CASE, sitk.GetArrayFromImage(image), tuple(image.GetSpacing()[::-1]), truth, start
    print(f"The dev set is not at {devset}; timing a synthetic volume of the same size.", file=sys.stderr)
    kk, jj, ii = np.indices(SHAPE, dtype=np.float32)
    truth = ((kk - 70) / 30) ** 2 + ((jj - 110) / 40) ** 2 + ((ii - 130) / 35) ** 2 <= 1.0
    rng = np.random.default_rng(0)
    volume = (rng.normal(0.0, 0.4, SHAPE) + truth).astype(np.float32)
    from scipy import ndimage

    return "synthetic", volume, (1.0, 1.0, 1.0), truth, ndimage.binary_erosion(truth, iterations=3)


def run(devset: str = DEVSET, tools=("graphcut3d", "growcut3d"), repeats: int = 1) -> dict:
    name, volume, spacing, truth, start = load(devset)
    rows = []
    for tool_name in tools:
        tool = build_volume_segmenter(tool_name)
        for kind in ("box", "mask"):
            clicks, starts, finals = [], [], []
            for _ in range(repeats):
                case = cvpr25.run_case(tool, volume, spacing, truth, kind, start, 5)
                clicks += case.click_seconds
                starts.append(case.seconds[0])
                finals.append(case.dscs[-1])
            rows.append({"tool": tool_name, "start": kind, "clicks": len(clicks),
                         "median_s_per_click": round(float(np.median(clicks)), 3),
                         "p95_s_per_click": round(float(np.percentile(clicks, 95)), 3),
                         "start_s": round(float(np.median(starts)), 3), "final_dsc": round(float(np.mean(finals)), 3)})
    goals = []
    for row in rows:
        if row["tool"] == "graphcut3d":
            peer = next((r for r in rows if r["tool"] == "growcut3d" and r["start"] == row["start"]), None)
            ratio = f", {peer['median_s_per_click'] / row['median_s_per_click']:.1f}x faster than Grow from seeds" if peer else ""
            goals.append({"start": row["start"], "goal": f"median <= {GOAL_SECONDS} s per click on one core",
                          "measured": f"{row['median_s_per_click']:.2f} s{ratio}",
                          "result": "PASS" if row["median_s_per_click"] <= GOAL_SECONDS else "FAIL"})
    result = {"volume": name, "shape": list(np.shape(volume)), "spacing": list(spacing), "rows": rows, "goals": goals,
              "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
              "when": time.strftime("%Y-%m-%d %H:%M")}
    common.write_json(os.path.join(common.RESULTS_DIR, "click3d_speed.json"), result)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devset", default=DEVSET)
    parser.add_argument("--tools", nargs="+", default=["graphcut3d", "growcut3d"])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    result = run(args.devset, args.tools, args.repeats)
    print(f"{result['volume']} {result['shape']} (k, j, i), spacing {result['spacing']} mm, one core")
    print(format_table(result["rows"], ("tool", "start", "clicks", "median_s_per_click", "p95_s_per_click",
                                        "start_s", "final_dsc"), "Seconds per click"))
    print(format_table(result["goals"], ("start", "goal", "measured", "result"), "Goal"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
