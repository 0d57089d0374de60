"""The 3D evaluation: propagate from one drawn slice, the simulated annotator checking every slice.

Protocol, for each volume/mask pair (any non-zero mask voxel is target): the user has drawn the
ground truth on the slice with the largest cross-section in the chosen plane; the mask is
propagated both ways (`ibisagent.volume_episode.VolumeEpisode`); on every other slice the
annotator may click up to ``clicks_per_slice`` times (0 = propagation alone). The simulated
annotator (`slice_annotator`) clicks like the 2D one and stops once the slice's IoU reaches
``stop_iou``; on a slice without target it says so ("no target"), which ends the propagation
there. Other policies are asked as they would be in use.

Reported per case: 3D Dice of the propagated volume against the truth, slices segmented (the
start included), clicks, median seconds per propagated slice; the summary has exactly
`SUMMARY_KEYS`. The baselines of the benchmark (copying the start mask; 2D "continue my mask"
on every slice on its own) are `copy_baseline` and `independent_baseline`.

A volume that cannot be used (damaged file, mask on another grid, too large for the memory
budget, a tool failure) is listed in ``skipped.txt`` with its reason and the run goes on. The
output folder is a `safe_io.OwnedFolder` (`output_folder`), checked before the work, its four
files written together at the end.
"""

from __future__ import annotations

import csv
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from . import image_io
from .actions import TERMINATE, Action, format_response
from .episode import Episode
from .evaluate import case_failure, find_pairs
from .imaging import Window
from .metrics import dice
from .policies.base import Observation, Policy
from .policies.simulated import SimulatedPolicy
from .safe_io import OwnedFolder
from .segmenters.base import Segmenter
from .session import run_until_stop
from .volume_episode import NO_TARGET_ANSWER, VolumeEpisode, VolumeResult
from .volume_slices import RGBSlices

SUMMARY_KEYS = ("cases", "dice3d", "slices", "clicks", "seconds_per_slice")
#: The files `evaluate_volumes` writes into its output folder.
OUTPUTS = ("summary.json", "per_case.csv", "dice3d_vs_clicks.png", "skipped.txt")
#: The annotator stops clicking on a slice once its IoU reaches this.
STOP_IOU = 0.9
#: (slice index, truth of that slice) -> the policy for that slice.
MakeSlicePolicy = Callable[[int, np.ndarray], Policy]


class NoTargetAnnotator(Policy):
    """The simulated annotator on a slice whose ground truth is empty: it says so."""

    name = "simulated"
    description = "simulated annotator (uses the ground-truth mask; for evaluation only)"

    def respond(self, observation: Observation) -> str:
        return format_response("The ground truth has no target on this slice.", Action(TERMINATE), NO_TARGET_ANSWER)


def slice_annotator(truth: np.ndarray, stop_iou: float = STOP_IOU) -> Policy:
    """The simulated annotator for one slice of the truth (bool (H, W))."""
    truth = np.asarray(truth, dtype=bool)
    return SimulatedPolicy(truth, stop_iou=stop_iou) if truth.any() else NoTargetAnnotator()


def simulated_slices(_index: int, truth: np.ndarray) -> Policy:
    return slice_annotator(truth)


def start_slice(truth: np.ndarray) -> int:
    """The index (first axis) of the slice with the largest cross-section of ``truth``."""
    return int(np.argmax(np.asarray(truth, dtype=bool).reshape(truth.shape[0], -1).sum(axis=1)))


@dataclass
class VolumeCase:
    name: str
    start: int
    truth_slices: int
    dice3d: float
    slices: int
    clicks: int
    seconds: List[float] = field(default_factory=list)
    ends: str = ""


def run_volume_case(
    name: str,
    slices: Sequence[np.ndarray],
    truth: np.ndarray,
    segmenter: Segmenter,
    make_policy: Optional[MakeSlicePolicy] = None,
    clicks_per_slice: int = 0,
    request: str = "",
    propagation: str = "auto",
    min_fraction: float = 0.2,
) -> VolumeCase:
    """Propagate from the truth's largest slice and score the result; ``truth`` is bool
    [index, row, col] in the same slice order as ``slices``."""
    truth = np.asarray(truth, dtype=bool)
    if truth.shape[0] != len(slices) or truth.shape[1:] != tuple(np.shape(slices[0])[:2]):
        raise ValueError(f"the mask has shape {truth.shape[1:]} x {truth.shape[0]} slices; the image has "
                         f"{tuple(np.shape(slices[0])[:2])} x {len(slices)}")
    if not truth.any():
        raise ValueError("the ground-truth mask is empty")
    make_policy = make_policy or simulated_slices
    start = start_slice(truth)
    episode = VolumeEpisode(slices, segmenter, lambda index: make_policy(index, truth[index]), {start: truth[start]},
                            request=request, steps_per_slice=clicks_per_slice, propagation=propagation,
                            min_fraction=min_fraction)
    try:
        result = episode.run()
    finally:
        episode.close()
    predicted = volume_of(result, truth.shape)
    ends = "; ".join(f"{e.direction}: {e.reason} at {e.at}" for e in result.ends)
    return VolumeCase(name, start, int(truth.any(axis=(1, 2)).sum()), dice(predicted, truth), len(result.masks),
                      result.clicks, [o.seconds for o in result.outcomes], ends)


def volume_of(result: VolumeResult, shape) -> np.ndarray:
    """The episode's kept slices as one bool volume [index, row, col]."""
    volume = np.zeros(shape, dtype=bool)
    for index, mask in result.masks.items():
        volume[index] = mask
    return volume


def copy_baseline(truth: np.ndarray, within_truth: bool = False) -> float:
    """3D Dice of the start slice's true mask copied to every slice (or, ``within_truth``,
    only to the slices where the truth has target: an oracle for where the target ends)."""
    truth = np.asarray(truth, dtype=bool)
    start = truth[start_slice(truth)]
    copied = np.repeat(start[None], truth.shape[0], axis=0)
    if within_truth:
        copied &= truth.any(axis=(1, 2))[:, None, None]
    return dice(copied, truth)


def independent_baseline(slices: Sequence[np.ndarray], truth: np.ndarray, segmenter: Segmenter,
                         clicks_per_slice: int) -> VolumeCase:
    """2D "continue my mask" on every slice on its own: each slice starts from the start
    slice's true mask and the simulated annotator clicks up to ``clicks_per_slice`` times (on a
    slice without target it says so and the slice is left empty). No slice learns from another."""
    truth = np.asarray(truth, dtype=bool)
    start = start_slice(truth)
    predicted = np.zeros_like(truth)
    predicted[start] = truth[start]
    clicks, seconds = 0, []
    for index in range(truth.shape[0]):
        if index == start:
            continue
        began = time.perf_counter()
        if clicks_per_slice == 0:
            predicted[index] = truth[start]
        else:
            episode = Episode(slices[index], segmenter, slice_annotator(truth[index]), initial_mask=truth[start],
                              max_steps=clicks_per_slice)
            run_until_stop(episode)
            clicks += sum(len(step.clicks) for step in episode.steps)
            if truth[index].any():
                predicted[index] = episode.mask
        seconds.append(time.perf_counter() - began)
    return VolumeCase("independent", start, int(truth.any(axis=(1, 2)).sum()), dice(predicted, truth),
                      int(predicted.any(axis=(1, 2)).sum()), clicks, seconds)


def summarise(cases: Sequence[VolumeCase]) -> Dict[str, float]:
    """The summary with exactly `SUMMARY_KEYS`."""
    if not cases:
        raise ValueError("No case could be evaluated; see the list of skipped pairs.")
    seconds = [s for case in cases for s in case.seconds]
    return {
        "cases": len(cases),
        "dice3d": round(float(np.mean([c.dice3d for c in cases])), 4),
        "slices": round(float(np.mean([c.slices for c in cases])), 2),
        "clicks": round(float(np.mean([c.clicks for c in cases])), 2),
        "seconds_per_slice": round(statistics.median(seconds), 5) if seconds else 0.0,
    }


def load_case(image_path: str, mask_path: str, plane: str, window: Window = None):
    """(RGB slices, bool truth [index, row, col]) of one volume and its mask along ``plane``."""
    image = image_io.read_image(image_path)
    if image_io.spatial_dimension(image) != 3:
        raise ValueError("the image is 2D; eval3d needs volumes (use `ibisagent eval` for 2D images)")
    values = image_io.read_mask_volume(mask_path, image, image_path)
    stack = image_io.volume_stack(image, plane)
    truth = stack.take(values != 0).astype(bool)
    return RGBSlices(stack.slices, window), truth


def output_folder(out_dir: str, images_dir: str, masks_dir: str, overwrite: bool = False) -> OwnedFolder:
    """The output folder of `evaluate_volumes`, checked (before any work): not an input folder,
    writable, no earlier evaluation there unless ``overwrite``, none of the user's files named
    like `OUTPUTS`."""
    return OwnedFolder(out_dir, overwrite, "--out", OUTPUTS, [images_dir, masks_dir], kind="eval3d",
                       what="the results of an evaluation")


def evaluate_volumes(
    images_dir: str,
    masks_dir: str,
    out_dir: Union[str, OwnedFolder],
    segmenter: Segmenter,
    make_policy: Optional[MakeSlicePolicy] = None,
    clicks_per_slice: int = 0,
    plane: str = "axial",
    request: str = "",
    window: Window = None,
    propagation: str = "auto",
    progress: bool = True,
    log: Callable[[str], None] = print,
    min_fraction: float = 0.2,
    overwrite: bool = False,
) -> Dict[str, float]:
    """Evaluate every volume/mask pair; write `OUTPUTS` (``per_case.csv``,
    ``dice3d_vs_clicks.png``, ``summary.json`` and ``skipped.txt``) to ``out_dir`` (a folder, or
    the `output_folder` already checked); return the summary."""
    from tqdm import tqdm

    if clicks_per_slice < 0:
        raise ValueError(f"--clicks-per-slice must be 0 or more; got {clicks_per_slice}.")
    if plane not in image_io.PLANES:
        raise ValueError(f"Unknown plane {plane!r}; choose one of: {', '.join(image_io.PLANES)}.")
    folder = out_dir if isinstance(out_dir, OwnedFolder) else output_folder(out_dir, images_dir, masks_dir, overwrite)
    pairs, problems = find_pairs(images_dir, masks_dir)
    cases: List[VolumeCase] = []
    bar = tqdm(pairs, desc="volumes", unit="volume", disable=not progress)
    for name, image_path, mask_path, _ in bar:
        bar.set_postfix_str(name)
        try:
            slices, truth = load_case(image_path, mask_path, plane, window)
            cases.append(run_volume_case(name, slices, truth, segmenter, make_policy, clicks_per_slice, request,
                                         propagation, min_fraction))
        except Exception as error:  # noqa: BLE001 - one bad volume is listed, the run goes on
            problems.append(f"{os.path.basename(image_path)}: {case_failure(error)}")
    folder.add_text("skipped.txt", "".join(line + "\n" for line in problems))
    for line in problems:
        log(f"skipped {line}")
    if not cases:
        folder.commit()
        raise ValueError(f"No case could be evaluated; see {os.path.join(folder.folder, 'skipped.txt')}.")
    summary = summarise(cases)
    with folder.add("per_case.csv") as temporary:
        _write_cases(temporary, cases)
    folder.add_json("summary.json", summary)
    from .render import dice_vs_clicks_plot

    with folder.add("dice3d_vs_clicks.png") as temporary:
        dice_vs_clicks_plot(temporary, [(c.name, c.clicks, c.dice3d) for c in cases],
                            f"{segmenter.name}, N = {clicks_per_slice}")
    folder.commit()
    return summary


def _write_cases(path: str, cases: Sequence[VolumeCase]) -> None:
    """``path``: the temporary file the output folder staged for ``per_case.csv``."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "start_slice", "truth_slices", "slices", "dice3d", "clicks", "seconds_per_slice",
                         "ends"])
        for c in cases:
            median = statistics.median(c.seconds) if c.seconds else 0.0
            writer.writerow([c.name, c.start, c.truth_slices, c.slices, f"{c.dice3d:.4f}", c.clicks, f"{median:.5f}",
                             c.ends])


__all__ = ["SUMMARY_KEYS", "OUTPUTS", "evaluate_volumes", "output_folder", "run_volume_case", "copy_baseline",
           "independent_baseline", "slice_annotator", "start_slice", "summarise"]
