"""`growcut3d`: Slicer's "Grow from seeds" (FastGrowCut, PyPI ``itk-growcut``) in 3D, the peer
the 3D click tools are measured against: what a Slicer user gets today without AI.

Seeds (uint8 [k, j, i], `slicer_seeds.UNKNOWN` / `TARGET` / `BACKGROUND`), as a Slicer user
paints them (issue 19):

- from a box (`BoxPrompt`): every slice outside the box's slice range, and the box's own slice
  outside its 2D box, are background; nothing is target until a positive click (so the box step
  alone gives an empty mask);
- from the user's mask: its core (eroded by `CORE_EROSION` voxels) is target and everything
  outside its dilation by `BACKGROUND_DILATION` voxels is background;
- every click is then painted as a ball of `volume_reach.SEED_RADIUS_VOXELS` voxels (of the
  finest axis) with its label, in click order. Clicks do not erase the start's seeds.

The start (the user's mask or the box) is the anchor kept as the prediction state, so every
step seeds from it again, never from FastGrowCut's previous output.

FastGrowCut labels every unknown voxel from its nearest seed along image-weighted paths, and
every voxel outside the bounding box of the unknown voxels is a seed, so it runs on that box grown
by one voxel (the same result, far less work), padded by one more voxel that it never labels.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage

from .growcut import FastGrowCut
from .slicer_seeds import BACKGROUND, TARGET, UNKNOWN
from .volume_base import BoxPrompt, VolumePrediction, VolumeSegmenter
from .volume_reach import add_ball, seed_radius_mm

#: The user's mask eroded by this many voxels is target...
CORE_EROSION = 2
#: ...and everything outside its dilation by this many voxels is background.
BACKGROUND_DILATION = 3


def seed_volume(shape, clicks, spacing, user_mask: Optional[np.ndarray] = None,
                box: Optional[BoxPrompt] = None) -> np.ndarray:
    """The seeds for ``clicks`` from the user's mask or a box (see the module docstring)."""
    seeds = np.full(shape, UNKNOWN, dtype=np.uint8)
    if user_mask is not None and user_mask.any():
        seeds[ndimage.distance_transform_edt(user_mask) > CORE_EROSION] = TARGET
        seeds[ndimage.distance_transform_edt(~user_mask) > BACKGROUND_DILATION] = BACKGROUND
    elif box is not None:
        seeds[: box.k0] = BACKGROUND
        seeds[box.k1 + 1:] = BACKGROUND
        outside = np.ones(shape[1:], dtype=bool)
        outside[box.j0: box.j1 + 1, box.i0: box.i1 + 1] = False
        seeds[box.k_mid][outside] = BACKGROUND
    radius = seed_radius_mm(spacing)
    for click in clicks:
        ball = np.zeros(shape, dtype=bool)
        add_ball(ball, click.voxel, radius, spacing)
        seeds[ball] = TARGET if click.positive else BACKGROUND
    return seeds


class VolumeGrowCutSegmenter(VolumeSegmenter):
    name = "growcut3d"
    description = "Slicer's Grow from seeds in 3D (FastGrowCut, itk-growcut), seeded as a Slicer user paints; CPU"

    def __init__(self, distance_penalty: float = 0.0) -> None:
        super().__init__()
        self._growcut = FastGrowCut(distance_penalty)

    def _embed(self, volume: np.ndarray, spacing) -> object:
        return np.ascontiguousarray(volume, dtype=np.float32)

    def _predict(self, volume_state, clicks, prior_mask, prior_state, box) -> VolumePrediction:
        shape = self.volume_shape
        if prior_state is None:
            prior_state = (prior_mask.copy() if prior_mask is not None else None, box)
        user_mask, start_box = prior_state
        seeds = seed_volume(shape, clicks, self.spacing, user_mask, start_box)
        if not clicks and user_mask is not None:
            return VolumePrediction(user_mask.copy(), prior_state, None)
        if not (seeds == TARGET).any():
            return VolumePrediction(np.zeros(shape, dtype=bool), prior_state, None)
        return VolumePrediction(self._grow(volume_state, seeds), prior_state, None)

    def _grow(self, volume: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        unknown = seeds == UNKNOWN
        result = seeds == TARGET
        if not unknown.any():
            return result
        box = []
        for axis in range(3):
            present = np.flatnonzero(unknown.any(axis=tuple(a for a in range(3) if a != axis)))
            box.append(slice(max(0, present[0] - 1), min(seeds.shape[axis], present[-1] + 2)))
        box = tuple(box)
        itk = self._growcut.itk
        image = itk.image_from_array(np.ascontiguousarray(np.pad(volume[box], 1, mode="edge")))
        image.SetSpacing([float(s) for s in self.spacing[::-1]])
        labels = itk.image_from_array(np.ascontiguousarray(np.pad(seeds[box], 1)))
        labels.SetSpacing([float(s) for s in self.spacing[::-1]])
        grown = self._growcut.grow(image, labels)[1:-1, 1:-1, 1:-1]
        result[box] = grown == TARGET
        return result


def build(**options) -> VolumeGrowCutSegmenter:
    return VolumeGrowCutSegmenter(**options)
