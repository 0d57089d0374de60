"""The standard interactive-segmentation evaluation (the NoC protocol of RITM/SimpleClick/SAM).

For each image/mask pair, the simulated annotator (or another policy) clicks ``clicks`` times
with no early stop; the IoU after every click is recorded. Reported: mean IoU after 1/3/5/10
clicks, NoC@85 and NoC@90 (clicks needed to reach that IoU; the click budget when never
reached), failures@90 (cases that never reach 0.9), final Dice, and the median seconds per click
of the segmentation tool.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import image_io
from .episode import Episode
from .imaging import Window, check_mask, to_rgb
from .metrics import clicks_to_reach, dice, iou
from .policies.base import Policy
from .policies.simulated import SimulatedPolicy
from .segmenters import Segmenter

#: Gives the policy for one case from its ground truth (the simulated annotator needs it).
MakePolicy = Callable[[np.ndarray], Policy]

SUMMARY_KEYS = ("cases", "miou@1", "miou@3", "miou@5", "miou@10", "noc@85", "noc@90", "failures@90",
                "dice_final", "seconds_per_click")
MASK_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".png")
#: Images may also be photographs (dermoscopy, endoscopy) stored as JPEG; masks must be lossless.
IMAGE_SUFFIXES = MASK_SUFFIXES + (".jpg", ".jpeg")


@dataclass
class CaseResult:
    name: str
    start_iou: float
    ious: List[float]
    dice_final: float
    seconds: List[float] = field(default_factory=list)
    stop_reason: Optional[str] = None


def run_case(
    name: str,
    image_rgb: np.ndarray,
    truth: np.ndarray,
    segmenter: Segmenter,
    make_policy: Optional[MakePolicy] = None,
    clicks: int = 20,
    initial: Optional[np.ndarray] = None,
    request: str = "",
    recorder=None,
) -> CaseResult:
    """Click ``clicks`` times on one image and record the IoU after each click. A policy that
    stops early (e.g. the mask is already perfect) keeps its last IoU for the remaining clicks.
    With a `ibisagent.training.recorder.TrainingRecorder` the episode is also written as a
    trajectory record (the ground truth as its reference)."""
    truth = check_mask(truth, image_rgb.shape[:2], "ground-truth mask")
    policy = (make_policy or SimulatedPolicy)(truth)
    episode = Episode(image_rgb, segmenter, policy, request=request, initial_mask=initial, max_steps=clicks)
    if recorder is not None:
        episode = recorder.wrap(episode, source="eval", truth=truth)
    ious: List[float] = []
    seconds: List[float] = []

    def record(step) -> None:
        ious.append(iou(episode.mask, truth))
        seconds.append(step.seconds)

    result = episode.run(on_step=record)
    if recorder is not None:
        episode.finish()
    start = iou(episode.initial_mask, truth)
    last = ious[-1] if ious else start
    ious.extend([last] * (clicks - len(ious)))
    return CaseResult(name, start, ious, dice(result.mask, truth), seconds, result.stop_reason)


def summarise(results: Sequence[CaseResult], clicks: int) -> Dict[str, float]:
    """The summary with exactly `SUMMARY_KEYS`."""
    if not results:
        raise ValueError("No case could be evaluated; see the list of skipped pairs.")
    curves = np.array([r.ious for r in results])

    def miou(count: int) -> float:
        return float(curves[:, min(count, clicks) - 1].mean())

    nocs85 = [clicks_to_reach(r.ious, 0.85, clicks) for r in results]
    nocs90 = [clicks_to_reach(r.ious, 0.90, clicks) for r in results]
    all_seconds = [s for r in results for s in r.seconds]
    return {
        "cases": len(results),
        "miou@1": round(miou(1), 4),
        "miou@3": round(miou(3), 4),
        "miou@5": round(miou(5), 4),
        "miou@10": round(miou(10), 4),
        "noc@85": round(float(np.mean(nocs85)), 3),
        "noc@90": round(float(np.mean(nocs90)), 3),
        "failures@90": int(sum(1 for r in results if max(r.ious) < 0.90)),
        "dice_final": round(float(np.mean([r.dice_final for r in results])), 4),
        "seconds_per_click": round(statistics.median(all_seconds), 5) if all_seconds else 0.0,
    }


def find_pairs(images_dir: str, masks_dir: str, initial_dir: Optional[str] = None) -> Tuple[list, List[str]]:
    """Pair files by name (without suffix). Returns ([(name, image, mask, initial|None)], problems)."""
    for folder, what in ((images_dir, "images"), (masks_dir, "masks"), (initial_dir, "initial masks")):
        if folder is not None and not os.path.isdir(folder):
            raise FileNotFoundError(f"The {what} folder does not exist: {folder}")
    problems: List[str] = []
    images = _by_name(images_dir, IMAGE_SUFFIXES, problems)
    masks = _by_name(masks_dir, MASK_SUFFIXES, problems)
    initials = _by_name(initial_dir, MASK_SUFFIXES, problems) if initial_dir else {}
    pairs = []
    for name, image in sorted(images.items()):
        if name not in masks:
            problems.append(f"{os.path.basename(image)}: no mask named {name}.* in {masks_dir}")
            continue
        if initial_dir and name not in initials:
            problems.append(f"{os.path.basename(image)}: no starting mask named {name}.* in {initial_dir}")
            continue
        pairs.append((name, image, masks[name], initials.get(name)))
    for name, mask in sorted(masks.items()):
        if name not in images:
            problems.append(f"{os.path.basename(mask)}: no image named {name}.* in {images_dir}")
    return pairs, problems


def _by_name(folder: str, suffixes: Sequence[str], problems: List[str]) -> Dict[str, str]:
    """Files of ``folder`` by case name. Files of other types, and a second file with the same
    case name, are added to ``problems`` (hidden files and sub-folders are passed over)."""
    found: Dict[str, str] = {}
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if entry.startswith(".") or not os.path.isfile(path):
            continue
        if image_io.suffix_of(entry) not in suffixes:
            problems.append(f"{entry}: not a file type eval reads ({', '.join(suffixes)}) in {folder}")
            continue
        name = image_io.case_name(entry)
        if name in found:
            problems.append(f"{entry}: another file in {folder} is also named {name}.*; "
                            f"using {os.path.basename(found[name])}")
            continue
        found[name] = path
    return found


def evaluate_folder(
    images_dir: str,
    masks_dir: str,
    out_dir: str,
    segmenter: Segmenter,
    make_policy: Optional[MakePolicy] = None,
    clicks: int = 20,
    initial_dir: Optional[str] = None,
    request: str = "",
    window: Window = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    recorder=None,
) -> Dict[str, float]:
    """Evaluate every pair, write ``per_case.csv``, ``iou_vs_clicks.png``, ``summary.json`` and
    ``skipped.txt`` to ``out_dir``, and return the summary."""
    from tqdm import tqdm

    if clicks < 1:
        raise ValueError(f"--clicks must be at least 1; got {clicks}.")
    pairs, problems = find_pairs(images_dir, masks_dir, initial_dir)
    results: List[CaseResult] = []
    for name, image_path, mask_path, initial_path in tqdm(pairs, desc="cases", unit="case", disable=not progress):
        try:
            pixels, _ = image_io.read_2d(image_path)
            image_rgb = to_rgb(pixels, window)
            truth = image_io.read_mask_2d(mask_path, image_rgb.shape[:2])
            if not truth.any():
                raise ValueError("the ground-truth mask is empty")
            initial = image_io.read_mask_2d(initial_path, image_rgb.shape[:2]) if initial_path else None
            results.append(run_case(name, image_rgb, truth, segmenter, make_policy, clicks, initial, request, recorder))
        except (ValueError, FileNotFoundError) as error:
            problems.append(f"{os.path.basename(image_path)}: {error}")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "skipped.txt"), "w") as handle:
        handle.writelines(line + "\n" for line in problems)
    for line in problems:
        log(f"skipped {line}")
    summary = summarise(results, clicks)
    _write_cases(os.path.join(out_dir, "per_case.csv"), results, clicks)
    with open(os.path.join(out_dir, "summary.json"), "w") as handle:
        json.dump(summary, handle, indent=2)
    from .render import iou_curve_plot

    curve = np.mean([r.ious for r in results], axis=0)
    start = float(np.mean([r.start_iou for r in results])) if initial_dir else None
    iou_curve_plot(os.path.join(out_dir, "iou_vs_clicks.png"), {segmenter.name: curve},
                   baseline=start)
    return summary


def _write_cases(path: str, results: Sequence[CaseResult], clicks: int) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "start_iou", *[f"iou@{k}" for k in range(1, clicks + 1)], "noc@85", "noc@90",
                         "dice_final", "seconds_per_click", "stop_reason"])
        for r in results:
            median = statistics.median(r.seconds) if r.seconds else 0.0
            writer.writerow([r.name, f"{r.start_iou:.4f}", *[f"{v:.4f}" for v in r.ious],
                             clicks_to_reach(r.ious, 0.85, clicks), clicks_to_reach(r.ious, 0.90, clicks),
                             f"{r.dice_final:.4f}", f"{median:.5f}", r.stop_reason or ""])
