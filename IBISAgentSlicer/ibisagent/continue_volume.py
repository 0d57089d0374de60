"""Headless "continue my mask" on a whole volume: `ibisagent continue` without ``--plane``.

The agent works the volume in one `ibisagent.volume_session.VolumeSession`: it chooses the
slices to review (any plane), proposes a click on each, every proposal is accepted, and the 3D
tool updates the mask around the clicks, until the agent finds nothing more to change or the
step limit.

Files:

- the mask file is a label map on the image's grid. ``--label N`` names the label to continue;
  every other label is locked (its voxels never change, and the worked label never grows into
  them). Without ``--label`` the mask must hold one label value (any value: 1, 255...); a map
  with several is refused rather than merged silently.
- the output is the input label map with only the worked label's voxels changed: removed ones
  become 0, added ones N. Same pixel type and geometry as the mask file (no mask: 0/1 uint8 on
  the image's grid). Written, with the JSON log, through `ibisagent.safe_io.OutputSet`: both at
  once at the end, never over an input.
- the log has every applied click with its slice (plane, index, x, y) and voxel (k, j, i), the
  proposals with the slices looked at and why, and (with a reference mask) the Dice after each
  step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np
import SimpleITK as sitk

from . import __version__, image_io
from .headless import describe_stop
from .metrics import dice
from .policies.base import Policy
from .session import EpisodeResult, Step
from .volume_session import DEFAULT_LOOKS, VolumeSession
from .volume_views import VolumeViews, views_of_image

#: Geometry differences below these count as the same grid (mm for the origin, relative for
#: spacing, absolute for direction cosines): float noise of files written by other tools.
ORIGIN_TOLERANCE = 1e-3
SPACING_TOLERANCE = 1e-4
DIRECTION_TOLERANCE = 1e-4


@dataclass
class VolumeInputs:
    """A volume and its start, read for a whole-volume continue.

    ``volume``: grey [k, j, i]; ``spacing``: (sk, sj, si) mm; ``labels``: the mask file's
    values [k, j, i] (None without a mask); ``label``: the worked label; ``start``: bool
    [k, j, i] (None without a mask); ``locked``: the other labels' voxels (None when there are
    none); ``image``/``mask_image``: the files' SimpleITK images (geometry)."""

    image: sitk.Image
    volume: np.ndarray
    spacing: tuple
    views: VolumeViews
    mask_image: Optional[sitk.Image]
    labels: Optional[np.ndarray]
    label: int
    start: Optional[np.ndarray]
    locked: Optional[np.ndarray]


def read_inputs(image_path: str, mask_path: Optional[str], label: Optional[int]) -> VolumeInputs:
    """Read and check the volume and its label map (see the module docstring)."""
    image = image_io.read_image(image_path)
    if image_io.spatial_dimension(image) != 3:
        raise ValueError(f"{image_path} is not a volume.")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{image_path} is a colour volume; 3D clicks need a grey volume (or use --plane).")
    volume = sitk.GetArrayFromImage(image)
    if np.issubdtype(volume.dtype, np.floating) and not np.isfinite(volume).all():
        raise ValueError(f"{image_path} contains NaN or infinite values; fix or mask them before segmenting.")
    spacing = tuple(reversed(image.GetSpacing()))
    views = views_of_image(image)
    if mask_path is None:
        if label is not None:
            raise ValueError("--label needs --mask: the label map to continue.")
        return VolumeInputs(image, volume, spacing, views, None, None, 1, None, None)
    mask_image = image_io.read_image(mask_path)
    _check_same_grid(mask_image, image, mask_path)
    if mask_image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"The mask {mask_path} has several components per voxel; give a label map.")
    labels = sitk.GetArrayFromImage(mask_image)
    values = np.unique(labels)
    if not np.array_equal(values, np.round(values)):
        raise ValueError(f"The mask {mask_path} holds values that are not whole numbers; give a label map.")
    present = [int(v) for v in values if v != 0]
    if label is None:
        if len(present) > 1:
            raise ValueError(f"The mask {mask_path} holds the labels {', '.join(map(str, present))}; choose the one to "
                             "continue with --label N (the others are kept as they are).")
        label = present[0] if present else 1
        locked = None
    else:
        if label == 0:
            raise ValueError("--label 0 is the background; give the label of the structure to continue.")
        if not np.can_cast(np.min_scalar_type(label), labels.dtype):
            raise ValueError(f"--label {label} does not fit the mask's voxel type ({labels.dtype}).")
        others = (labels != 0) & (labels != label)
        locked = others if others.any() else None
    return VolumeInputs(image, volume, spacing, views, mask_image, labels, int(label), labels == label, locked)


def _check_same_grid(mask_image: sitk.Image, image: sitk.Image, mask_path: str) -> None:
    if mask_image.GetSize() != image.GetSize():
        raise ValueError(f"The mask {mask_path} has size {mask_image.GetSize()}, but the image has {image.GetSize()}.")
    spacing = np.asarray(image.GetSpacing())
    if (not np.allclose(mask_image.GetSpacing(), spacing, rtol=SPACING_TOLERANCE, atol=0)
            or not np.allclose(mask_image.GetOrigin(), image.GetOrigin(), rtol=0, atol=ORIGIN_TOLERANCE)
            or not np.allclose(mask_image.GetDirection(), image.GetDirection(), rtol=0, atol=DIRECTION_TOLERANCE)):
        raise ValueError(f"The mask {mask_path} lies on another grid than the image (origin, spacing or direction "
                         "differ); resample it onto the image first.")


def read_truth(path: str, inputs: VolumeInputs, label: Optional[int] = None) -> np.ndarray:
    """A reference mask on the image's grid, bool [k, j, i]: its voxels of ``label`` (the
    ``--label`` given), else any non-zero voxel."""
    truth_image = image_io.read_image(path)
    _check_same_grid(truth_image, inputs.image, path)
    values = sitk.GetArrayFromImage(truth_image)
    return values == label if label is not None else values != 0


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
        + (", each click confirmed in a second view" if session.confirm and len(session.planes) > 1 else ""))
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


def output_image(inputs: VolumeInputs, mask: np.ndarray) -> sitk.Image:
    """The label map to write: the input's, with only the worked label's voxels changed (see
    the module docstring), on the mask file's grid and in its pixel type."""
    mask = np.asarray(mask, dtype=bool)
    if inputs.labels is None:
        image = sitk.GetImageFromArray(mask.astype(np.uint8))
        image.CopyInformation(inputs.image)
        return image
    labels = inputs.labels.copy()
    labels[inputs.start & ~mask] = 0
    labels[mask & ~inputs.start] = inputs.label
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(inputs.mask_image)
    return image


def write_image(path: str, image: sitk.Image) -> None:
    try:
        sitk.WriteImage(image, path, True)
    except RuntimeError as error:
        raise OSError(f"Could not write {path}; check that its folder is writable and has free space.") from error


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


