"""Headless propagation on files: `ibisagent propagate`.

Reads a volume and a mask volume on the same grid (`image_io.read_mask_volume`), takes the
mask's slice(s) K of the chosen plane as the start (the user's worked slices), runs a
`VolumeEpisode` accepting every proposal within the per-slice step limit, and writes the 3D mask:
the input mask with the label worked on (`LabelMask`: ``--label``, by default the only one)
replaced on exactly the slices the propagation kept; every other voxel, other labels on those
slices included, keeps its value and the file its data type. With it a JSON log with one entry
per slice (carried start, the agent's steps, the end rule that fired) and where each front
ended. Both are staged in the command's `safe_io.OutputSet` and written together. Prints one
row per slice as it goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import __version__, image_io
from .imaging import Window
from .label_mask import LabelMask, reference_mask
from .policies.base import Policy
from .safe_io import OutputSet
from .segmenters.base import Segmenter
from .volume_episode import SliceOutcome, VolumeEpisode, VolumeResult
from .volume_slices import RGBSlices


@dataclass
class PropagationInputs:
    """A volume read for propagation: ``slices`` (RGB, display orientation), the input mask
    (its values and the label worked on; ``labels.binary`` is bool [k, j, i], the file's order),
    the label's mask as slices, and the image's geometry."""

    slices: RGBSlices
    labels: LabelMask
    mask_slices: np.ndarray
    stack: image_io.VolumeStack
    image: object

    @property
    def volume_mask(self) -> np.ndarray:
        return self.labels.binary


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


def read_inputs(image_path: str, mask_path: str, plane: str, window: Window = None,
                label: Optional[int] = None) -> PropagationInputs:
    image = image_io.read_image(image_path)
    if image_io.spatial_dimension(image) != 3:
        raise ValueError(f"{image_path} is not a volume; propagation needs a 3D image (use `ibisagent continue` in 2D).")
    labels = LabelMask(image_io.read_mask_volume(mask_path, image, image_path), label, f"The mask {mask_path}")
    stack = image_io.volume_stack(image, plane)
    return PropagationInputs(RGBSlices(stack.slices, window), labels, stack.take(labels.binary).astype(bool),
                             stack, image)


def read_truth(inputs: PropagationInputs, truth_path: str, label: Optional[int] = None) -> np.ndarray:
    """The reference mask volume as bool slices (like ``inputs.mask_slices``): any non-zero voxel,
    or, for a mask with several labels, the label worked on."""
    values = image_io.read_mask_volume(truth_path, inputs.image)
    truth = reference_mask(values, label, f"The reference mask {truth_path}")
    return inputs.stack.take(truth).astype(bool)


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


def stage_outputs(outputs: OutputSet, inputs: PropagationInputs, result: VolumeResult, details: dict) -> List[int]:
    """Stage the 3D mask (``--out``: the label replaced on the kept propagated slices only) and
    the JSON log (``--log``) in ``outputs``; returns the slices written."""
    written = result.propagated
    volume = inputs.stack.put(inputs.volume_mask, {i: result.masks[i] for i in written})
    values = inputs.labels.merged(volume)
    with outputs.stage("--out") as temporary:
        image_io.save_image(image_io.label_image(values, inputs.image, image_io.suffix_of(outputs.paths["--out"])),
                            temporary)
    document = dict(details)
    document.update({
        "ibisagent_version": __version__,
        "label": inputs.labels.label.item(),
        "left_to_other_labels": inputs.labels.blocked(volume),
        "starts": result.starts,
        "written_slices": written,
        "slices": [outcome.to_dict() for outcome in result.outcomes],
        "ends": [end.to_dict() for end in result.ends],
        "clicks": result.clicks,
        "seconds": round(result.seconds, 3),
    })
    outputs.write_json("--log", document)
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
