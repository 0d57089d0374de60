"""Headless propagation on files: `ibisagent propagate`.

Reads a volume and a mask volume on the same grid, takes the mask's slice(s) K of the chosen
plane as the start (the user's worked slices), runs a `VolumeEpisode` accepting every proposal
within the per-slice step limit, and writes the 3D mask: the input mask with exactly the slices
the propagation kept replaced (every other voxel as it was, read as binary: any non-zero voxel
is inside) plus a JSON log with one entry per slice (carried start, the agent's steps, the end
rule that fired) and where each front ended. Prints one row per slice as it goes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import __version__, image_io
from .imaging import Window
from .policies.base import Policy
from .segmenters.base import Segmenter
from .volume_episode import SliceOutcome, VolumeEpisode, VolumeResult
from .volume_slices import RGBSlices


@dataclass
class PropagationInputs:
    """A volume read for propagation: ``slices`` (RGB, display orientation), the input mask
    as bool [k, j, i] (the file's order), the same mask as slices, and the image's geometry."""

    slices: RGBSlices
    volume_mask: np.ndarray
    mask_slices: np.ndarray
    stack: image_io.VolumeStack
    image: object


def parse_range(text: Optional[str], count: int) -> Tuple[int, int]:
    """``A:B`` (inclusive; either side may be empty) to (first, last) within 0..count-1."""
    if not text:
        return 0, count - 1
    if ":" not in text:
        raise ValueError(f"--range {text!r}: give FIRST:LAST slice indices, e.g. 40:80 (either may be left out).")
    low, high = text.split(":", 1)
    try:
        first = int(low) if low.strip() else 0
        last = int(high) if high.strip() else count - 1
    except ValueError:
        raise ValueError(f"--range {text!r}: FIRST and LAST must be whole slice indices.") from None
    if not 0 <= first <= last < count:
        raise ValueError(f"--range {text!r} is not inside the volume's slices 0:{count - 1}.")
    return first, last


def read_inputs(image_path: str, mask_path: str, plane: str, window: Window = None) -> PropagationInputs:
    image = image_io.read_image(image_path)
    if image_io.spatial_dimension(image) != 3:
        raise ValueError(f"{image_path} is not a volume; propagation needs a 3D image (use `ibisagent continue` in 2D).")
    mask_image = image_io.read_image(mask_path)
    if mask_image.GetSize() != image.GetSize():
        raise ValueError(f"The mask {mask_path} has size {mask_image.GetSize()}, but the image has {image.GetSize()}.")
    import SimpleITK as sitk

    volume_mask = sitk.GetArrayFromImage(mask_image) != 0
    if volume_mask.ndim != 3:
        raise ValueError(f"The mask {mask_path} must be a single-component volume.")
    stack = image_io.volume_stack(image, plane)
    return PropagationInputs(RGBSlices(stack.slices, window), volume_mask, stack.take(volume_mask).astype(bool),
                             stack, image)


def start_masks(inputs: PropagationInputs, indices: Sequence[int], plane: str) -> Dict[int, np.ndarray]:
    count = inputs.mask_slices.shape[0]
    starts = {}
    for index in indices:
        if not 0 <= index < count:
            raise ValueError(f"--index {index} is outside 0..{count - 1} for the {plane} plane.")
        if not inputs.mask_slices[index].any():
            raise ValueError(f"The mask is empty on {plane} slice {index}; draw the target there first "
                             "(or choose the slice with --index).")
        starts[index] = inputs.mask_slices[index]
    return starts


def run_propagation(episode: VolumeEpisode, log: Callable[[str], None] = print) -> VolumeResult:
    """Run ``episode`` accepting every proposal, one printed row per slice."""
    log(f"{'slice':>5}  {'from':>5}  {'carried px':>10}  {'final px':>8}  {'steps':>5}  end")

    def row(outcome: SliceOutcome) -> None:
        end = outcome.end or (("kept (faded, edited)" if outcome.faded else "kept") if outcome.kept else "")
        log(f"{outcome.index:>5}  {outcome.neighbour:>5}  {outcome.start_pixels:>10}  {outcome.mask_pixels:>8}  "
            f"{len(outcome.steps):>5}  {end}")

    return episode.run(on_slice=row)


def write_outputs(out: str, log_path: str, inputs: PropagationInputs, result: VolumeResult, details: dict) -> List[int]:
    """Write the 3D mask (only the kept propagated slices replaced) and the JSON log; returns the
    slices written."""
    written = result.propagated
    volume = inputs.stack.put(inputs.volume_mask, {i: result.masks[i] for i in written})
    image_io.write_mask(out, volume, inputs.image)
    document = dict(details)
    document.update({
        "ibisagent_version": __version__,
        "starts": result.starts,
        "written_slices": written,
        "slices": [outcome.to_dict() for outcome in result.outcomes],
        "ends": [end.to_dict() for end in result.ends],
        "clicks": result.clicks,
        "seconds": round(result.seconds, 3),
    })
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    with open(log_path, "w") as handle:
        json.dump(document, handle, indent=2)
    return written


def describe(result: VolumeResult) -> str:
    ends = "; ".join(f"from slice {e.start} {e.direction}: {e.reason} at {e.at}" for e in result.ends)
    return f"{len(result.propagated)} slices propagated, {result.clicks} clicks; {ends}."


def engine_details(policy: Policy, segmenter: Segmenter, options: dict) -> dict:
    return {
        "policy": {"name": policy.name, "description": policy.description},
        "segmenter": {"name": segmenter.name, "description": segmenter.description},
        **options,
    }
