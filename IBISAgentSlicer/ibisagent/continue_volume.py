"""Headless "continue my mask" on a whole volume: `ibisagent continue` without ``--plane``.

The agent works the volume in one `ibisagent.volume_session.VolumeSession`: it chooses the
slices to review (any plane), proposes a click on each, every proposal is accepted, and the 3D
tool updates the mask around the clicks, until the agent finds nothing more to change or the
step limit.

Files, read and written as every command does:

- the image is read whole or refused (`ibisagent.image_io.read_image`: a damaged file, NaN or
  infinite values, a volume whose whole-volume session would not fit the memory budget,
  `ibisagent.memory.SESSION3D_BYTES_PER_VOXEL`);
- the mask file is a label map on the image's grid (`ibisagent.image_io.read_mask_volume`:
  another grid is refused with both geometries). The label worked on and the others are
  `ibisagent.label_mask.LabelMask`'s: ``--label N``, by default the only non-zero label (a map
  with several is refused rather than merged silently); every other label is locked (its voxels
  never change, and the worked label never grows into them);
- the output is the input label map with only the worked label's voxels changed
  (`LabelMask.merged`: the same values and data type; no mask: 0/1 uint8), on the image's grid.
  Written, with the JSON log, through `ibisagent.safe_io.OutputSet`: both at once at the end,
  never over an input;
- the log has every applied click with its slice (plane, index, x, y) and voxel (k, j, i), the
  proposals with the slices looked at and why, and (with a reference mask, read by
  `ibisagent.label_mask.reference_mask`) the Dice after each step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np
import SimpleITK as sitk

from . import __version__, image_io, memory
from .headless import describe_stop
from .label_mask import LabelMask, reference_mask
from .metrics import dice
from .policies.base import Policy
from .session import EpisodeResult, Step
from .volume_session import DEFAULT_LOOKS, VolumeSession
from .volume_views import VolumeViews, views_of_image

@dataclass
class VolumeInputs:
    """A volume and its start, read for a whole-volume continue.

    ``image``: the image file's SimpleITK image (geometry); ``volume``: grey [k, j, i];
    ``spacing``: (sk, sj, si) mm; ``labels``: the mask file's values and the label worked on
    (None without a mask)."""

    image: sitk.Image
    volume: np.ndarray
    spacing: tuple
    views: VolumeViews
    labels: Optional[LabelMask]

    @property
    def label(self):
        """The label worked on (1 without a mask)."""
        return self.labels.label.item() if self.labels is not None else 1

    @property
    def start(self) -> Optional[np.ndarray]:
        """bool [k, j, i]: the label's voxels (None without a mask)."""
        return self.labels.binary if self.labels is not None else None

    @property
    def locked(self) -> Optional[np.ndarray]:
        """bool [k, j, i]: the other labels' voxels (None when there are none)."""
        return self.labels.others() if self.labels is not None else None


def read_inputs(image_path: str, mask_path: Optional[str], label: Optional[int]) -> VolumeInputs:
    """Read and check the volume and its label map (see the module docstring)."""
    image = image_io.read_image(image_path, memory.SESSION3D_BYTES_PER_VOXEL)
    if image_io.spatial_dimension(image) != 3:
        raise ValueError(f"{image_path} is not a volume.")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{image_path} is a colour volume; 3D clicks need a grey volume (or use --plane).")
    volume = sitk.GetArrayFromImage(image)
    spacing = tuple(reversed(image.GetSpacing()))
    views = views_of_image(image)
    if mask_path is None:
        if label is not None:
            raise ValueError("--label needs --mask: the label map to continue.")
        return VolumeInputs(image, volume, spacing, views, None)
    labels = LabelMask(image_io.read_mask_volume(mask_path, image, image_path), label, f"The mask {mask_path}")
    return VolumeInputs(image, volume, spacing, views, labels)


def read_truth(path: str, inputs: VolumeInputs, label: Optional[int] = None) -> np.ndarray:
    """A reference mask on the image's grid, bool [k, j, i] (`label_mask.reference_mask`)."""
    return reference_mask(image_io.read_mask_volume(path, inputs.image), label, f"The reference mask {path}")


@dataclass
class VolumeReport:
    result: EpisodeResult
    start_dice: Optional[float]
    dices: List[Optional[float]]
    seconds: float


def run_continue_volume(inputs: VolumeInputs, tool, policy: Policy, request: str, max_steps: int = 20,
                        window=None, truth: Optional[np.ndarray] = None, log: Callable[[str], None] = print,
                        looks: int = DEFAULT_LOOKS, confirm: bool = True) -> VolumeReport:
    """One session on the whole volume, every proposal accepted; a row per step as it happens.
    ``looks`` and ``confirm``: see `ibisagent.volume_session.VolumeSession`."""
    started = time.perf_counter()
    session = VolumeSession(inputs.volume, inputs.views, tool, policy, request, inputs.start, locked=inputs.locked,
                            spacing=inputs.spacing, window=window, max_steps=max_steps, looks=looks,
                            confirm=confirm)
    start_dice = dice(session.mask, truth) if truth is not None else None
    dices: List[Optional[float]] = []
    log(f"Proposals by: {policy.name} - {policy.description}")
    log(f"3D tool: {tool.name} - {tool.description}")
    log(f"Slices looked at: {', '.join(session.planes)} planes, up to {session.looks} per proposal"
        + (", a click whose change reaches off its slice confirmed in a second view" if session.confirm else ""))
    log(f"{'step':>5}  {'click':<34} {'decision':<9} {'voxels':>8}  {'Dice' if truth is not None else '':>6}  reasoning")
    start_text = f"{start_dice:.4f}" if start_dice is not None else ""
    log(f"{'start':>5}  {'(your mask)':<34} {'':<9} {int(session.mask.sum()):>8}  {start_text:>6}")

    def on_step(step: Step) -> None:
        score = dice(session.mask, truth) if truth is not None else None
        dices.append(score)
        log(_row(step, score))

    result = session.run(on_step=on_step)
    log(f"Stopped: {describe_stop(result)}")
    return VolumeReport(result, start_dice, dices, time.perf_counter() - started)


def _row(step: Step, score: Optional[float]) -> str:
    text = ", ".join(f"{'+' if c.positive else '-'}{c.plane} {c.index} ({c.x},{c.y})" for c in step.clicks)
    reasoning = step.proposal.reasoning.replace("\n", " ") if step.proposal else ""
    if len(reasoning) > 80:
        reasoning = reasoning[:77] + "..."
    score_text = f"{score:.4f}" if score is not None else ""
    return f"{step.index:>5}  {text:<34} {step.decision:<9} {step.mask_pixels:>8}  {score_text:>6}  {reasoning}"


def log_document(report: VolumeReport, inputs: VolumeInputs, policy: Policy, tool, details: dict) -> dict:
    """The JSON log: every step with its clicks (slice and voxel), every proposal with the slices
    looked at, the stop reason, and the Dice after each step when a reference was given."""
    result = report.result
    start = inputs.start if inputs.start is not None else np.zeros(result.mask.shape, bool)
    return {
        "ibisagent_version": __version__,
        **details,
        "label": inputs.label,
        "locked_voxels": int(inputs.locked.sum()) if inputs.locked is not None else 0,
        "left_to_other_labels": inputs.labels.blocked(result.mask) if inputs.labels is not None else 0,
        "policy": {"name": policy.name, "description": policy.description},
        "volume_tool": {"name": tool.name, "description": tool.description},
        "stop_reason": result.stop_reason,
        "stop_description": describe_stop(result),
        "answer": result.answer,
        "start_voxels": int(start.sum()),
        "start_dice": report.start_dice,
        "steps": [dict(step.to_dict(), dice=score) for step, score in zip(result.steps, report.dices)],
        "proposals": [proposal.to_dict() for proposal in result.proposals],
        "final_voxels": int(result.mask.sum()),
        "voxels_added": int((result.mask & ~start).sum()),
        "voxels_removed": int((start & ~result.mask).sum()),
        "reference_given": report.start_dice is not None,
        "seconds": round(report.seconds, 3),
    }


