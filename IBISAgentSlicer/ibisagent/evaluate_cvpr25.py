"""`ibisagent eval3d --protocol cvpr25`: the CVPR 2025 3D protocol (`ibisagent.cvpr25`) over
folders of volumes, ground-truth masks and, for the ``mask`` start, the users' starting masks,
matched by name (`ibisagent.evaluate.find_pairs`).

Each case's target is every non-zero voxel of its mask (BraTS' labels 1-4 together are the whole
tumour; an instance map is all its instances together: give one instance per file to score one).
Inputs are read as every command reads them (`ibisagent.image_io`: whole or refused, within the
memory budget, NaN refused, a mask on the image's grid). A case that cannot be used (not a
volume, a damaged file, a mask on another grid, an empty target, a tool error on bad input) goes
to ``skipped.txt`` with its reason and the run goes on.

Outputs, all through `ibisagent.safe_io.OwnedFolder` (atomic, never over an input or into an
input folder, an earlier run's files replaced only with ``overwrite``, the user's files never):

- ``--out``: ``summary.json`` with exactly `SUMMARY_KEYS` (means over cases; seconds per click:
  the median over every click of every case), ``per_case.csv`` (DSC and NSD after the start and
  after each click, the AUCs, the finals, the case's median seconds per click),
  ``dsc_vs_clicks.png`` and ``skipped.txt``;
- ``--save-masks``: each case's final mask as ``NAME.nii.gz`` (uint8 0/1) with the image's
  geometry.
"""

from __future__ import annotations

import csv
import io
import os
import statistics
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import cvpr25, image_io
from .evaluate import find_pairs
from .safe_io import OwnedFolder, same_file
from .segmenters.volume_base import VolumeSegmenter

SUMMARY_KEYS = ("cases", "dsc_auc", "dsc_final", "nsd_auc", "nsd_final", "seconds_per_click")
OUTPUTS = ("summary.json", "per_case.csv", "dsc_vs_clicks.png", "skipped.txt")
#: The `safe_io.OwnedFolder` kinds of the two output folders (other runs' files are never theirs).
KIND = "eval3d cvpr25"
MASKS_KIND = "eval3d cvpr25 masks"


def load_case(image_path: str, mask_path: str, initial_path: Optional[str] = None):
    """(volume [k, j, i], spacing (sk, sj, si) mm, bool target, bool start or None, the image)."""
    import SimpleITK as sitk

    image = image_io.read_image(image_path)
    if image_io.spatial_dimension(image) != 3:
        raise ValueError("the image is 2D; the cvpr25 protocol needs volumes")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("the volume has several components per voxel; give a grey volume")
    truth = _mask_on(image, image_path, mask_path)
    if not truth.any():
        raise ValueError("the ground-truth mask is empty")
    start = _mask_on(image, image_path, initial_path) if initial_path else None
    spacing = tuple(float(s) for s in image.GetSpacing()[::-1])
    return sitk.GetArrayFromImage(image), spacing, truth, start, image


def _mask_on(image, image_path: str, path: str) -> np.ndarray:
    """The non-zero voxels of the mask at ``path``, which must lie on the grid of ``image``
    (read from ``image_path``)."""
    return image_io.read_mask_volume(path, image, image_path) != 0


def evaluate(images_dir: str, masks_dir: str, out_dir: str, segmenter: VolumeSegmenter, start: str = "box",
             initial_dir: Optional[str] = None, clicks: int = 5, save_masks: Optional[str] = None,
             overwrite: bool = False, progress: bool = True, log: Callable[[str], None] = print) -> Dict[str, float]:
    """Run the protocol on every matched case; write the outputs (module docstring); return the
    summary."""
    from tqdm import tqdm

    if start not in cvpr25.STARTS:
        raise ValueError(f"Unknown start {start!r}; choose one of: {', '.join(cvpr25.STARTS)}.")
    if start == "mask" and not initial_dir:
        raise ValueError("--start mask needs --initial DIR: the starting masks, named like the images.")
    if clicks < 1:
        raise ValueError(f"--clicks must be at least 1; got {clicks}.")
    pairs, problems = find_pairs(images_dir, masks_dir, initial_dir if start == "mask" else None)
    inputs = [images_dir, masks_dir, initial_dir] + [path for pair in pairs for path in pair[1:] if path]
    if save_masks and same_file(save_masks, out_dir):
        raise ValueError("--save-masks and --out must be different folders.")
    results = OwnedFolder(out_dir, overwrite, "--out", names=OUTPUTS, inputs=inputs, kind=KIND,
                          what="the results of an evaluation")
    masks_out = (OwnedFolder(save_masks, overwrite, "--save-masks", inputs=inputs, kind=MASKS_KIND,
                             what="the final masks of an evaluation") if save_masks else None)
    rows: List[Tuple[str, cvpr25.CaseRun]] = []
    bar = tqdm(pairs, desc="volumes", unit="volume", disable=not progress)
    for name, image_path, mask_path, initial_path in bar:
        bar.set_postfix_str(name)
        try:
            volume, spacing, truth, initial, image = load_case(image_path, mask_path, initial_path)
            run = cvpr25.run_case(segmenter, volume, spacing, truth, start, initial, clicks)
        except (ValueError, OSError) as error:
            problems.append(f"{os.path.basename(image_path)}: {error}")
            continue
        if masks_out is not None:
            with masks_out.stage(name + ".nii.gz") as temporary:
                image_io.save_image(image_io.mask_image(run.mask, image, ".nii.gz"), temporary)
        rows.append((name, run))
    for line in problems:
        log(f"skipped {line}")
    results.write_text("skipped.txt", "".join(line + "\n" for line in problems))
    if not rows:
        results.finish()
        if masks_out is not None:
            masks_out.finish()
        raise ValueError("No case could be evaluated; see skipped.txt in the output folder.")
    summary = summarise([run for _, run in rows])
    results.write_text("per_case.csv", _per_case_csv(rows, start, clicks))
    with results.stage("dsc_vs_clicks.png") as temporary:
        _plot(temporary, rows, f"{segmenter.name}, start: {start}")
    results.write_json("summary.json", summary)
    results.finish()
    if masks_out is not None:
        masks_out.finish()
    return summary


def summarise(runs: Sequence[cvpr25.CaseRun]) -> Dict[str, float]:
    """The summary with exactly `SUMMARY_KEYS`."""
    seconds = [s for run in runs for s in run.click_seconds]
    return {
        "cases": len(runs),
        "dsc_auc": round(float(np.mean([r.dsc_auc for r in runs])), 4),
        "dsc_final": round(float(np.mean([r.dscs[-1] for r in runs])), 4),
        "nsd_auc": round(float(np.mean([r.nsd_auc for r in runs])), 4),
        "nsd_final": round(float(np.mean([r.nsds[-1] for r in runs])), 4),
        "seconds_per_click": round(statistics.median(seconds), 4) if seconds else 0.0,
    }


def _per_case_csv(rows, start: str, clicks: int) -> str:
    handle = io.StringIO()
    writer = csv.writer(handle, lineterminator="\n")
    steps = range(clicks + 1)
    writer.writerow(["case", "start", "clicks_placed"] + [f"dsc_{n}" for n in steps] + [f"nsd_{n}" for n in steps]
                    + ["dsc_auc", "nsd_auc", "dsc_final", "nsd_final", "seconds_start", "seconds_per_click"])
    for name, run in rows:
        median = statistics.median(run.click_seconds) if run.click_seconds else 0.0
        writer.writerow([name, start, len(run.clicks)] + [f"{v:.4f}" for v in run.dscs] + [f"{v:.4f}" for v in run.nsds]
                        + [f"{run.dsc_auc:.4f}", f"{run.nsd_auc:.4f}", f"{run.dscs[-1]:.4f}", f"{run.nsds[-1]:.4f}",
                           f"{run.seconds[0]:.4f}", f"{median:.4f}"])
    return handle.getvalue()


def _plot(path: str, rows, title: str) -> None:
    """A PNG of each case's DSC after the start (0) and after each click, with the mean."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 4), dpi=120)
    for name, run in rows:
        axes.plot(range(len(run.dscs)), run.dscs, marker="o", markersize=3, linewidth=1, alpha=0.7, label=name)
    mean = np.mean([run.dscs for _, run in rows], axis=0)
    axes.plot(range(len(mean)), mean, color="black", linewidth=2.5, label="mean")
    axes.set_xlabel("clicks (0: the start)")
    axes.set_ylabel("DSC")
    axes.set_ylim(0.0, 1.0)
    axes.set_title(f"DSC versus clicks ({title})")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=6)
    figure.tight_layout()
    figure.savefig(path, format="png")
    pyplot.close(figure)
