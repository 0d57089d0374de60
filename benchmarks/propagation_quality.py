"""Quality of propagating a mask through a volume (`ibisagent eval3d`), beside two baselines.

Cases: the 3D dev volumes in ``--devset`` (default ../shared/data/devset/3d; skipped with a
message when absent) and three MNI152 volumes from nilearn (brain, white matter, grey matter).
Each case has ONE target, chosen from its labels.json (`bench_common.choose_target`):

- ``mri_brats2013_*``: whole tumour (every label > 0: necrosis, edema, non-enhancing and
  enhancing tumour), FLAIR;
- ``ct_deeplesion_*``: the lesion (label 1);
- ``synthetic_stardist_nuclei3d``: its largest nucleus (an instance map; reported on its own,
  since it is synthetic);
- MNI152: the brain mask, white matter and grey matter (a thin ribbon) of the T1 template.

Protocol (`ibisagent.evaluate3d`): the true mask on the slice with the largest cross-section
(axial) is the start; propagate both ways; on every other slice the simulated annotator may
click up to N times (it stops at IoU 0.9, says "no target" where the truth is empty). Each N
is a real `evaluate_volumes` run (the `ibisagent eval3d` code path) writing its files under
``results/eval3d/``. Baselines in the same run: the start mask copied to every slice, the same
copy limited to the slices that hold the target (an oracle for where the target ends), and 2D
"continue my mask" on every slice on its own from the start mask with N clicks.

Goals (issue 11): with N = 0, better than copying; with N = 2, mean 3D Dice at least 0.85 of
the same tool's N = 5.

    python benchmarks/propagation_quality.py [--segmenter graphcut] [--propagation auto] [--quick]

Re-run after any change of the default tool or policy: the figures depend on both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence

import bench_common as common
import numpy as np
import SimpleITK as sitk
from bench_common import format_table

from ibisagent import image_io
from ibisagent.evaluate3d import copy_baseline, evaluate_volumes, independent_baseline, load_case
from ibisagent.segmenters import DEFAULT_SEGMENTER, build_segmenter

DEVSET = common.DEVSET_3D
CLICKS = (0, 1, 2, 3, 5)
GROUPS = ("real", "mni152", "synthetic")
OUT = os.path.join(common.RESULTS_DIR, "eval3d")


def write_cases(folder: str, devset: Optional[str], quick: bool) -> List[dict]:
    """Write every case as images/NAME.nii.gz + masks/NAME.nii.gz under ``folder``/GROUP."""
    cases = []
    keep = (lambda name: name.startswith("ct_deeplesion_000009")) if quick else None
    for name, image, label, target, what in common.dev_volumes(devset, keep):
        group = "synthetic" if name.startswith("synthetic_") else "real"
        cases.append(_write_case(folder, group, name, image, target, label, what))
    for tissue, what in common.MNI152_TARGETS:
        if quick and tissue != "brain":
            continue
        image, reference = common.mni152_images(tissue)
        cases.append(_write_case(folder, "mni152", f"mni152_{tissue}", image, sitk.GetArrayFromImage(reference) != 0,
                                 reference, what))
    return cases


def _write_case(folder, group, name, image, target, reference, what) -> dict:
    for kind in ("images", "masks"):
        os.makedirs(os.path.join(folder, group, kind), exist_ok=True)
    sitk.WriteImage(image, os.path.join(folder, group, "images", name + ".nii.gz"))
    image_io.write_mask(os.path.join(folder, group, "masks", name + ".nii.gz"), target, reference)
    return {"name": name, "group": group, "target": what}


def run(devset: Optional[str] = DEVSET, segmenter_name: str = DEFAULT_SEGMENTER, propagation: str = "auto",
        clicks: Sequence[int] = CLICKS, quick: bool = False, out: str = OUT) -> Dict:
    started = time.perf_counter()
    cases = write_cases(os.path.join(out, "cases"), devset, quick)
    segmenter = build_segmenter(segmenter_name)
    groups = [g for g in GROUPS if any(c["group"] == g for c in cases)]
    rows, per_case = [], []
    for group in groups:
        images, masks = (os.path.join(out, "cases", group, kind) for kind in ("images", "masks"))
        loaded = {c["name"]: load_case(os.path.join(images, c["name"] + ".nii.gz"),
                                       os.path.join(masks, c["name"] + ".nii.gz"), "axial")
                  for c in cases if c["group"] == group}
        for name, (_, truth) in loaded.items():
            per_case.append({"group": group, "case": name, "method": "copy every slice", "N": "-",
                             "dice3d": copy_baseline(truth)})
            per_case.append({"group": group, "case": name, "method": "copy, truth's slices (oracle)", "N": "-",
                             "dice3d": copy_baseline(truth, within_truth=True)})
        for method in ("copy every slice", "copy, truth's slices (oracle)"):
            values = [r["dice3d"] for r in per_case if r["group"] == group and r["method"] == method]
            rows.append({"group": group, "method": method, "N": "-", "dice3d": float(np.mean(values))})
        for count in clicks:
            summary = evaluate_volumes(images, masks, os.path.join(out, f"{group}_N{count}"), segmenter,
                                       clicks_per_slice=count, propagation=propagation, progress=False,
                                       log=lambda line: None)
            rows.append(dict(group=group, method="propagation", N=count, **summary))
            per_case += _cases_of(os.path.join(out, f"{group}_N{count}", "per_case.csv"), group, count)
            if count == 0:
                continue
            independent = [independent_baseline(slices, truth, segmenter, count) for slices, truth in loaded.values()]
            seconds = [s for case in independent for s in case.seconds]
            rows.append({"group": group, "method": "2D continue, each slice alone", "N": count,
                         "cases": len(independent), "dice3d": float(np.mean([c.dice3d for c in independent])),
                         "slices": float(np.mean([c.slices for c in independent])),
                         "clicks": float(np.mean([c.clicks for c in independent])),
                         "seconds_per_slice": statistics.median(seconds) if seconds else 0.0})
            for name, case in zip(loaded, independent):
                per_case.append({"group": group, "case": name, "method": "2D continue, each slice alone", "N": count,
                                 "dice3d": case.dice3d, "clicks": case.clicks})
    result = {"segmenter": segmenter.name, "propagation": propagation, "cases": cases, "rows": rows,
              "per_case": per_case, "goals": goals(rows), "seconds": round(time.perf_counter() - started, 1)}
    common.write_json(os.path.join(out, "propagation_quality.json"), result)
    return result


def _cases_of(path: str, group: str, count: int) -> List[dict]:
    import csv

    with open(path) as handle:
        return [{"group": group, "case": r["case"], "method": "propagation", "N": count, "dice3d": float(r["dice3d"]),
                 "slices": int(r["slices"]), "truth_slices": int(r["truth_slices"]), "clicks": int(r["clicks"]),
                 "ends": r["ends"]} for r in csv.DictReader(handle)]


def goals(rows: List[dict]) -> List[dict]:
    found = []
    for group in GROUPS:
        def dice_of(method, count="-"):
            return next((r["dice3d"] for r in rows if r["group"] == group and r["method"] == method
                         and r["N"] == count), None)

        zero, copy, oracle = dice_of("propagation", 0), dice_of("copy every slice"), dice_of("copy, truth's slices (oracle)")
        if zero is not None:
            found.append({"group": group, "goal": "N=0 better than copying every slice",
                          "measured": f"{zero:.3f} vs {copy:.3f}", "result": "PASS" if zero > copy else "FAIL"})
            found.append({"group": group, "goal": "(N=0 better than the oracle-range copy)",
                          "measured": f"{zero:.3f} vs {oracle:.3f}", "result": "PASS" if zero > oracle else "FAIL"})
        two, five = dice_of("propagation", 2), dice_of("propagation", 5)
        if two is not None and five is not None:
            ratio = two / five if five else float("nan")
            found.append({"group": group, "goal": "N=2 mean 3D Dice >= 0.85 x N=5",
                          "measured": f"{two:.3f} / {five:.3f} = {ratio:.2f}",
                          "result": "PASS" if ratio >= 0.85 else "FAIL"})
    return found


def report(result: Dict) -> str:
    parts = [f"tool {result['segmenter']}, propagation {result['propagation']}, {result['seconds']} s"]
    parts.append(format_table(result["cases"], ("group", "name", "target"), "Cases and targets"))
    columns = ("group", "method", "N", "cases", "dice3d", "slices", "clicks", "seconds_per_slice")
    parts.append(format_table(result["rows"], columns, "Mean over cases (3D Dice, slices segmented, clicks per case, "
                              "median s per slice)"))
    parts.append(format_table([r for r in result["per_case"] if r["method"] == "propagation"],
                              ("group", "case", "N", "dice3d", "slices", "truth_slices", "clicks", "ends"),
                              "Propagation per case"))
    parts.append(format_table(result["goals"], ("group", "goal", "measured", "result"), "Goals"))
    return "\n\n".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devset", default=DEVSET, help="folder of the 3D dev volumes")
    parser.add_argument("--segmenter", default=DEFAULT_SEGMENTER)
    parser.add_argument("--propagation", default="auto")
    parser.add_argument("--clicks", type=int, nargs="+", default=list(CLICKS))
    parser.add_argument("--quick", action="store_true", help="one dev volume and the MNI152 brain only")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args(argv)
    result = run(args.devset, args.segmenter, args.propagation, args.clicks, args.quick, args.out)
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
