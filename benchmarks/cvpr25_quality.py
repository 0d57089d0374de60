"""Quality under the CVPR 2025 3D protocol (`ibisagent eval3d --protocol cvpr25`): our 3D tool
against 3D Grow from seeds and today's propagation, in the same run, from both starts.

Cases (one binary target each, chosen by `bench_common.choose_target`):

- ``real``: the four real dev volumes in ``--devset`` (default ../shared/data/devset/3d; two
  BraTS 2013 FLAIR whole tumours, two DeepLesion CT lesions on 5 mm slices), with their
  ``*_initial.nii.gz`` rough starts;
- ``mni152``: the MNI152 T1 template's brain mask, white matter and grey matter (a thin ribbon),
  nilearn's copies (nothing downloaded), each with three rough starts made by the recipe the dev
  set's starts follow (SOURCES.md): eroded and dilated by 4% of the target's equivalent sphere
  diameter, and cut by a plane through its centroid (the larger side kept; the plane's normal
  seeded by the name), on the template cut to the brain's bounding box (plus 8 voxels); the box
  start once per structure;
- ``synthetic``: the synthetic nuclei volume's largest nucleus, box start only (it has no rough
  start; reported on its own, as it is not real).

Each (group, tool, start) is one real `evaluate_cvpr25.evaluate` run (the command's code path)
writing under ``results/cvpr25/``; the table gives DSC at the start and after the last click,
DSC_AUC and NSD, per case and as means.

    OMP_NUM_THREADS=1 python benchmarks/cvpr25_quality.py [--tools graphcut3d growcut3d propagation3d] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from typing import Dict, List, Optional

import bench_common as common
import numpy as np
import SimpleITK as sitk
from bench_common import format_table
from scipy import ndimage

from ibisagent import image_io
from ibisagent.evaluate_cvpr25 import evaluate
from ibisagent.segmenters import build_volume_segmenter

DEVSET = common.DEVSET_3D
OUT = os.path.join(common.RESULTS_DIR, "cvpr25")
TOOLS = ("graphcut3d", "growcut3d", "propagation3d")
ROUGH = ("eroded", "dilated", "cut")


def rough_start(truth: np.ndarray, kind: str, seed: int) -> np.ndarray:
    """A rough 3D start by the dev set's recipe (module docstring)."""
    diameter = 2.0 * (3.0 * truth.sum() / (4.0 * np.pi)) ** (1.0 / 3.0)
    step = max(1.0, 0.04 * diameter)
    if kind == "eroded":
        return ndimage.distance_transform_edt(truth) > step
    if kind == "dilated":
        return ndimage.distance_transform_edt(~truth) <= step
    normal = np.random.default_rng(seed).normal(size=3)
    where = np.argwhere(truth)
    side = (np.indices(truth.shape).reshape(3, -1).T - where.mean(axis=0)) @ normal > 0
    side = side.reshape(truth.shape)
    kept = truth & side if (truth & side).sum() >= (truth & ~side).sum() else truth & ~side
    return kept


def write_cases(folder: str, devset: Optional[str], quick: bool) -> List[dict]:
    """Write every case as GROUP/{images,masks,initial}/NAME.nii.gz under ``folder``."""
    cases = []
    keep = (lambda name: name in ("ct_deeplesion_000009", "mri_brats2013_pat0004")) if quick else None
    for name, image, _, target, what in common.dev_volumes(devset, keep):
        synthetic = name.startswith("synthetic_")
        initial_path = os.path.join(devset, name + "_initial.nii.gz")
        initial = None if synthetic else sitk.GetArrayFromImage(sitk.ReadImage(initial_path)) != 0
        cases.append(_write(folder, "synthetic" if synthetic else "real", name, image, target, initial, what))
    for tissue, what in common.MNI152_TARGETS:
        if quick and tissue == "white":
            continue
        image, target = _brain_crop(*common.mni152_images(tissue))
        for number, kind in enumerate(ROUGH):
            name = f"mni152_{tissue}_{kind}"
            start = rough_start(target, kind, number)
            cases.append(_write(folder, "mni152", name, image, target, start, f"{what}, {kind}", box=number == 0))
    return cases


def _brain_crop(image: sitk.Image, mask: sitk.Image):
    """The template and its mask cut to the brain's bounding box plus 8 voxels (the template's
    empty margins only cost time), with their geometry."""
    _, brain = common.mni152_images("brain")
    where = np.argwhere(sitk.GetArrayFromImage(brain))
    low = np.maximum(where.min(axis=0) - 8, 0)
    high = np.minimum(where.max(axis=0) + 9, np.array(image.GetSize()[::-1]))
    size, index = [int(v) for v in (high - low)[::-1]], [int(v) for v in low[::-1]]
    cropped = sitk.RegionOfInterest(image, size, index)
    return cropped, sitk.GetArrayFromImage(sitk.RegionOfInterest(mask, size, index)) != 0


def _write(folder, group, name, image, target, initial, what, box: bool = True) -> dict:
    """Write one case for the mask start (when it has a start) and, if ``box``, the box start
    (``GROUP_box``: a box does not depend on the rough start, so each target once)."""
    places = [(group, initial is not None)] + ([(group + "_box", False)] if box and initial is not None else [])
    for place, with_start in places:
        for kind in ("images", "masks", "initial"):
            os.makedirs(os.path.join(folder, place, kind), exist_ok=True)
        sitk.WriteImage(image, os.path.join(folder, place, "images", name + ".nii.gz"))
        image_io.write_mask(os.path.join(folder, place, "masks", name + ".nii.gz"), target, image)
        if with_start:
            image_io.write_mask(os.path.join(folder, place, "initial", name + ".nii.gz"), initial, image)
    return {"name": name, "group": group, "target": what}


def run(devset: Optional[str] = DEVSET, tools=TOOLS, quick: bool = False, out: str = OUT) -> Dict:
    started = time.perf_counter()
    cases = write_cases(os.path.join(out, "cases"), devset, quick)
    per_case, rows = [], []
    for group in [g for g in ("real", "mni152", "synthetic") if any(c["group"] == g for c in cases)]:
        for start in ("box", "mask") if group != "synthetic" else ("box",):
            base = os.path.join(out, "cases", group + ("_box" if start == "box" and group != "synthetic" else ""))
            for name in tools:
                tool = build_volume_segmenter(name)
                folder = os.path.join(out, f"{group}_{start}_{name}")
                initial = os.path.join(base, "initial") if start == "mask" else None
                summary = evaluate(os.path.join(base, "images"), os.path.join(base, "masks"), folder, tool, start,
                                   initial, 5, overwrite=True, progress=False, log=lambda line: None)
                rows.append(dict(group=group, start=start, tool=name, **summary,
                                 dsc_start=_mean_start(folder)))
                per_case += [dict(group=group, start=start, tool=name, **r) for r in _cases_of(folder)]
                print(f"{group} {start} {name}: {summary}", file=sys.stderr, flush=True)
    result = {"cases": cases, "rows": rows, "per_case": per_case, "targets": targets(rows),
              "seconds": round(time.perf_counter() - started, 1)}
    common.write_json(os.path.join(out, "cvpr25_quality.json"), result)
    return result


def _cases_of(folder: str) -> List[dict]:
    with open(os.path.join(folder, "per_case.csv")) as handle:
        return [{"case": r["case"], "dsc_start": float(r["dsc_0"]), "dsc_final": float(r["dsc_final"]),
                 "dsc_auc": float(r["dsc_auc"]), "nsd_final": float(r["nsd_final"]),
                 "seconds_per_click": float(r["seconds_per_click"])} for r in csv.DictReader(handle)]


def _mean_start(folder: str) -> float:
    return round(float(np.mean([r["dsc_start"] for r in _cases_of(folder)])), 4)


def targets(rows: List[dict]) -> List[dict]:
    """The issue's targets per group: final DSC >= Grow from seeds + 0.05 from both starts."""
    found = []
    for row in rows:
        if row["tool"] != "graphcut3d":
            continue
        peer = next((r for r in rows if r["group"] == row["group"] and r["start"] == row["start"]
                     and r["tool"] == "growcut3d"), None)
        if peer is None:
            continue
        ok = row["dsc_final"] >= peer["dsc_final"] + 0.05
        found.append({"group": row["group"], "start": row["start"], "goal": "final DSC >= Grow from seeds + 0.05",
                      "measured": f"{row['dsc_final']:.3f} vs {peer['dsc_final']:.3f}", "result": "PASS" if ok else "FAIL"})
    return found


def report(result: Dict) -> str:
    parts = [f"{result['seconds']} s"]
    parts.append(format_table(result["rows"], ("group", "start", "tool", "cases", "dsc_start", "dsc_final", "dsc_auc",
                                               "nsd_final", "nsd_auc", "seconds_per_click"), "Means over cases"))
    parts.append(format_table(result["per_case"], ("group", "case", "start", "tool", "dsc_start", "dsc_final",
                                                   "dsc_auc", "nsd_final", "seconds_per_click"), "Per case"))
    parts.append(format_table(result["targets"], ("group", "start", "goal", "measured", "result"), "Targets"))
    return "\n\n".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devset", default=DEVSET, help="folder of the 3D dev volumes")
    parser.add_argument("--tools", nargs="+", default=list(TOOLS))
    parser.add_argument("--quick", action="store_true", help="two dev volumes and two MNI152 structures")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args(argv)
    result = run(args.devset, args.tools, args.quick, args.out)
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
