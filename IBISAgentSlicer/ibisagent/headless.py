"""Headless "continue my mask": run an episode on files, accept every proposal, write results.

Used by `ibisagent continue` and the quick-start demo. Writes the final mask, a JSON step log,
optional pictures of every step, and prints a table of steps (with the IoU against a reference
mask when one is given).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np

from . import __version__, image_io
from .episode import Episode, EpisodeResult, Step
from .imaging import Window, check_mask, to_rgb
from .metrics import dice, iou
from .policies.base import Policy
from .render import contact_sheet, step_picture
from .segmenters.base import Segmenter


@dataclass
class ContinueReport:
    result: EpisodeResult
    start_iou: Optional[float]
    ious: List[Optional[float]]
    seconds: float


def run_continue(
    image_rgb: np.ndarray,
    segmenter: Segmenter,
    policy: Policy,
    request: str,
    initial_mask: Optional[np.ndarray] = None,
    max_steps: int = 20,
    truth: Optional[np.ndarray] = None,
    pictures_dir: Optional[str] = None,
    log: Callable[[str], None] = print,
    recorder=None,
) -> ContinueReport:
    """Run one episode accepting every proposal; print a row per step as it happens. With a
    `ibisagent.training.recorder.TrainingRecorder` the episode is also written as a trajectory
    record (``truth``, when given, as its reference)."""
    started = time.perf_counter()
    if truth is not None:
        truth = check_mask(truth, image_rgb.shape[:2], "reference mask")
    episode = Episode(image_rgb, segmenter, policy, request=request, initial_mask=initial_mask, max_steps=max_steps)
    recording = recorder.record(episode, source="continue", truth=truth) if recorder is not None else None
    start_iou = iou(episode.mask, truth) if truth is not None else None
    ious: List[Optional[float]] = []
    pictures = []
    log(f"Proposals by: {policy.name} - {policy.description}")
    log(f"Segmentation tool: {segmenter.name} - {segmenter.description}")
    log(_header(truth is not None))
    start_text = f"{start_iou:.3f}" if start_iou is not None else "-"
    log(f"{'start':>5}  {'(your mask)':<26} {'':<10} {int(episode.mask.sum()):>7}  {start_text:>6}")
    if pictures_dir:
        os.makedirs(pictures_dir, exist_ok=True)
        first = step_picture(image_rgb, episode.mask, title=f"start  IoU {start_text}")
        first.save(os.path.join(pictures_dir, "step_00.png"))
        pictures.append(first)

    def on_step(step: Step) -> None:
        score = iou(episode.mask, truth) if truth is not None else None
        ious.append(score)
        log(_row(step, score))
        if pictures_dir:
            earlier = [c for s in episode.steps[:-1] for c in s.clicks]
            text = f"step {step.index}  {_action_text(step)}" + (f"  IoU {score:.3f}" if score is not None else "")
            picture = step_picture(image_rgb, episode.mask, step.clicks, earlier, text)
            picture.save(os.path.join(pictures_dir, f"step_{step.index:02d}.png"))
            pictures.append(picture)

    result = episode.run(on_step=on_step)
    if recording is not None:
        log(f"Recorded {len(result.steps)} steps for training in {recording.finish()}")
    log(f"Stopped: {describe_stop(result)}")
    if pictures_dir and pictures:
        contact_sheet(pictures).save(os.path.join(pictures_dir, "all_steps.png"))
    return ContinueReport(result, start_iou, ious, time.perf_counter() - started)


def step_picture_files(folder: str) -> List[str]:
    """The step pictures an earlier run left in ``folder`` (step_NN.png, all_steps.png)."""
    if not os.path.isdir(folder):
        return []
    return sorted(name for name in os.listdir(folder)
                  if name == "all_steps.png" or re.fullmatch(r"step_\d+\.png", name))


def clear_step_pictures(folder: str) -> None:
    """Remove an earlier run's step pictures so a shorter run leaves no stale ones behind."""
    for name in step_picture_files(folder):
        os.remove(os.path.join(folder, name))


def describe_stop(result: EpisodeResult) -> str:
    last = result.proposals[-1] if result.proposals else None
    reasons = {
        "terminated": "the policy said the mask is done" + (f" (answer: {result.answer})" if result.answer else ""),
        "unparseable": f"the policy's output could not be parsed: {last.error if last else ''}",
        "repeated": "the policy proposed the same action three times in a row",
        "step-limit": f"the step limit was reached after {_count(len(result.steps), 'step')}",
        "stopped-by-user": "stopped by the decision callback",
    }
    return reasons.get(result.stop_reason or "", str(result.stop_reason))


def _header(with_truth: bool) -> str:
    return f"{'step':>5}  {'action':<26} {'decision':<10} {'mask px':>7}  {'IoU' if with_truth else '':>6}  reasoning"


def _action_text(step: Step) -> str:
    if step.proposal is not None and step.proposal.action is not None:
        return step.proposal.action.to_text()
    return ", ".join(f"{'+' if c.positive else '-'}({c.x},{c.y})" for c in step.clicks)


def _row(step: Step, score: Optional[float]) -> str:
    reasoning = step.proposal.reasoning.replace("\n", " ") if step.proposal else ""
    if len(reasoning) > 90:
        reasoning = reasoning[:87] + "..."
    score_text = f"{score:.3f}" if score is not None else ""
    return f"{step.index:>5}  {_action_text(step):<26} {step.decision:<10} {step.mask_pixels:>7}  {score_text:>6}  {reasoning}"


def write_log(path: str, report: ContinueReport, policy: Policy, segmenter: Segmenter, request: str,
              truth_given: bool) -> None:
    result = report.result
    document = {
        "ibisagent_version": __version__,
        "request": request,
        "policy": {"name": policy.name, "description": policy.description},
        "segmenter": {"name": segmenter.name, "description": segmenter.description},
        "stop_reason": result.stop_reason,
        "stop_description": describe_stop(result),
        "answer": result.answer,
        "start_iou": report.start_iou,
        "steps": [dict(step.to_dict(), iou=score) for step, score in zip(result.steps, report.ious)],
        "proposals": [p.to_dict() for p in result.proposals],
        "final_mask_pixels": int(result.mask.sum()),
        "reference_given": truth_given,
        "seconds": round(report.seconds, 3),
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(document, handle, indent=2)


def load_slice(image_path: str, plane: Optional[str], index: Optional[int], window: Window):
    """(RGB slice, VolumeSlice or None, the sitk image) for a 2D file or a slice of a volume."""
    image = image_io.read_image(image_path)
    if image_io.spatial_dimension(image) == 3:
        if plane is None:
            raise ValueError(f"{image_path} is a 3D volume; choose a slice with --plane (and --index).")
        where = image_io.volume_slice(image, plane, index)
        return to_rgb(where.pixels, window), where, image
    pixels, image = image_io.read_2d(image_path)
    return to_rgb(pixels, window), None, image


def read_matching_mask(path: str, where, image, shape) -> np.ndarray:
    """A mask file on the same grid as the image: the whole volume for 3D, else the 2D mask."""
    if where is None:
        return image_io.read_mask_2d(path, shape)
    import SimpleITK as sitk

    volume = image_io.read_image(path)
    if volume.GetSize() != image.GetSize():
        raise ValueError(f"The mask {path} has size {volume.GetSize()}, but the image has {image.GetSize()}.")
    return sitk.GetArrayFromImage(volume) != 0


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def final_iou_line(report: ContinueReport, truth: Optional[np.ndarray]) -> str:
    if truth is None:
        return f"Final mask: {int(report.result.mask.sum())} pixels."
    final = iou(report.result.mask, truth)
    return (f"IoU against the reference: start {report.start_iou:.3f} -> final {final:.3f} "
            f"(Dice {dice(report.result.mask, truth):.3f}) after {_count(len(report.result.steps), 'step')}.")
