"""Headless "continue my mask": run an episode on files, accept every proposal, write results.

Used by `ibisagent continue` and the quick-start demo. Prints a table of steps (with the IoU
against a reference mask when one is given) and makes the outputs: the final mask, a JSON step
log (`log_document`) and optional pictures of every step, staged in a `safe_io.OwnedFolder`
(`picture_folder`) and written by the caller's commit together with the mask and the log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional

import numpy as np

from . import __version__, image_io
from .episode import Episode, EpisodeResult, Step
from .imaging import Window, check_mask, to_rgb
from .label_mask import LabelMask, reference_mask
from .metrics import dice, iou
from .policies.base import Policy
from .render import contact_sheet, step_picture
from .safe_io import OwnedFolder
from .segmenters.base import Segmenter

#: The picture of the whole run in a pictures folder (beside ``step_NN.png``).
ALL_STEPS = "all_steps.png"


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
    pictures: Optional[OwnedFolder] = None,
    log: Callable[[str], None] = print,
    recorder=None,
) -> ContinueReport:
    """Run one episode accepting every proposal; print a row per step as it happens. With
    ``pictures`` (a `picture_folder`) a picture of every step and `ALL_STEPS` are staged there
    (`OwnedFolder.add`); the caller commits them. With a
    `ibisagent.training.recorder.TrainingRecorder` the episode is also written as a trajectory
    record (``truth``, when given, as its reference)."""
    started = time.perf_counter()
    if truth is not None:
        truth = check_mask(truth, image_rgb.shape[:2], "reference mask")
    episode = Episode(image_rgb, segmenter, policy, request=request, initial_mask=initial_mask, max_steps=max_steps)
    recording = recorder.record(episode, source="continue", truth=truth) if recorder is not None else None
    start_iou = iou(episode.mask, truth) if truth is not None else None
    ious: List[Optional[float]] = []
    shown = []
    log(f"Proposals by: {policy.name} - {policy.description}")
    log(f"Segmentation tool: {segmenter.name} - {segmenter.description}")
    log(_header(truth is not None))
    start_text = f"{start_iou:.3f}" if start_iou is not None else "-"
    log(f"{'start':>5}  {'(your mask)':<26} {'':<10} {int(episode.mask.sum()):>7}  {start_text:>6}")
    if pictures is not None:
        shown.append(_stage_picture(pictures, step_picture_name(0),
                                    step_picture(image_rgb, episode.mask, title=f"start  IoU {start_text}")))

    def on_step(step: Step) -> None:
        score = iou(episode.mask, truth) if truth is not None else None
        ious.append(score)
        log(_row(step, score))
        if pictures is not None:
            earlier = [c for s in episode.steps[:-1] for c in s.clicks]
            text = f"step {step.index}  {_action_text(step)}" + (f"  IoU {score:.3f}" if score is not None else "")
            shown.append(_stage_picture(pictures, step_picture_name(step.index),
                                        step_picture(image_rgb, episode.mask, step.clicks, earlier, text)))

    result = episode.run(on_step=on_step)
    if recording is not None:
        log(f"Recorded {len(result.steps)} steps for training in {recording.finish()}")
    log(f"Stopped: {describe_stop(result)}")
    if pictures is not None and shown:
        _stage_picture(pictures, ALL_STEPS, contact_sheet(shown))
    return ContinueReport(result, start_iou, ious, time.perf_counter() - started)


def step_picture_name(index: int) -> str:
    return f"step_{index:02d}.png"


def picture_folder(folder: str, max_steps: int, overwrite: bool, inputs: Iterable[Optional[str]] = (),
                   option: str = "--pictures") -> OwnedFolder:
    """The folder of step pictures, every name a run of ``max_steps`` may write checked now:
    none of them may be the user's file or an input (`safe_io.OwnedFolder`)."""
    names = [step_picture_name(index) for index in range(max(max_steps, 0) + 1)] + [ALL_STEPS]
    return OwnedFolder(folder, overwrite, option, names=names, inputs=inputs)


def _stage_picture(pictures: OwnedFolder, name: str, picture):
    with pictures.add(name) as temporary:
        picture.save(temporary, format="PNG")
    return picture


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


def log_document(report: ContinueReport, policy: Policy, segmenter: Segmenter, request: str, truth_given: bool,
                 **details) -> dict:
    """The JSON step log of a run; ``details`` (e.g. the label worked on) are added as they are."""
    result = report.result
    return {
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
        **details,
    }


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


def read_start_mask(path: str, where, image, shape, label: Optional[int] = None) -> LabelMask:
    """The starting mask file's values on the image's grid (the whole volume for 3D, else the 2D
    mask) and the label worked on (`LabelMask`)."""
    if where is None:
        values = image_io.read_mask_values_2d(path, shape)
    else:
        values = image_io.read_mask_volume(path, image)
    return LabelMask(values, label, f"The mask {path}")


def read_truth(path: str, where, image, shape, label: Optional[int] = None) -> np.ndarray:
    """A reference mask (bool) on the worked image or slice: any non-zero value is inside, or,
    for a mask with several labels, the label worked on (``--label``)."""
    values = image_io.read_mask_values_2d(path, shape) if where is None else image_io.read_mask_volume(path, image)
    truth = reference_mask(values, label, f"The reference mask {path}")
    return where.take(truth) != 0 if where is not None else truth


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def final_iou_line(report: ContinueReport, truth: Optional[np.ndarray]) -> str:
    if truth is None:
        return f"Final mask: {int(report.result.mask.sum())} pixels."
    final = iou(report.result.mask, truth)
    return (f"IoU against the reference: start {report.start_iou:.3f} -> final {final:.3f} "
            f"(Dice {dice(report.result.mask, truth):.3f}) after {_count(len(report.result.steps), 'step')}.")
