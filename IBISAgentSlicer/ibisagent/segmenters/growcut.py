"""`growcut`: Slicer's "Grow from seeds" (FastGrowCut, PyPI ``itk-growcut``) driven by clicks.

This is the peer the classical `sitk` tool is measured against: what a Slicer user gets today
without AI. It runs FastGrowCut the way the Segment Editor effect would if the user painted these
seeds by hand:

- Each click becomes a disk of `seed_radius(shape)` pixels (the same convention `sitk` uses for
  a click's neighbourhood): label 1 (target) for positive clicks, label 2 (background) for
  negative ones. Later clicks paint over earlier ones where disks overlap.
- Background: in Slicer the user must paint a background seed. A click alone cannot, so the
  image border (one pixel wide) is always a background seed, except where a positive click's
  disk touches it. Keeping the border after the first negative click makes a stronger peer than
  dropping it: a single negative disk cannot hold back the target label on its own.
- The prior mask (first step only, i.e. the user's own mask for "continue my mask"): its
  interior, eroded by two seed radii, is painted as target seed, except within
  `PRIOR_SEED_CLEARANCE` of the image size around any negative click (the user would erase those
  seeds where they say "not target"). These user seeds are returned as the prediction state and
  reused on later steps; later steps' prior masks are FastGrowCut's own output and give no seeds,
  since reseeding from them would freeze every mistake.

FastGrowCut only takes 3D scalar images of at least 3 voxels per side and never labels the
outermost voxels, so the grey image (luminance for colour images) is padded by one pixel in-plane
and stacked three slices deep; only the middle slice is read back.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage

from ..clicks import Click
from .base import Prediction, Segmenter
from .click_reach import disk_offsets, seed_radius

TARGET, BACKGROUND = 1, 2
#: Prior-mask seeds closer than this fraction of the image's larger side to a negative click are
#: dropped.
PRIOR_SEED_CLEARANCE = 0.1


def _import_itk():
    try:
        import itk
    except ImportError as error:
        raise ImportError("The growcut tool needs FastGrowCut: pip install itk-growcut") from error
    if not hasattr(itk, "FastGrowCut"):
        raise ImportError("ITK is installed without FastGrowCut: pip install itk-growcut")
    return itk


class GrowCutSegmenter(Segmenter):
    name = "growcut"
    description = "Slicer's Grow from seeds (FastGrowCut, itk-growcut), seeded from clicks; CPU, no weights"

    def __init__(self, distance_penalty: float = 0.0) -> None:
        super().__init__()
        self._itk = _import_itk()
        #: FastGrowCut's "seed locality": 0 as in Slicer's default.
        self.distance_penalty = float(distance_penalty)

    def _embed(self, image: np.ndarray) -> object:
        grey = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        padded = np.pad(grey, 1, mode="edge")
        return self._itk.image_from_array(np.ascontiguousarray(np.repeat(padded[None], 3, axis=0)))

    def _predict(
        self,
        image_state: object,
        clicks: list,
        prior_mask: Optional[np.ndarray],
        prior_state: Optional[np.ndarray],
    ) -> Prediction:
        shape = self.image_shape
        if prior_state is not None:
            user_seeds = np.asarray(prior_state, dtype=bool)
        elif prior_mask is not None:
            user_seeds = ndimage.binary_erosion(prior_mask, iterations=2 * seed_radius(shape))
        else:
            user_seeds = np.zeros(shape, dtype=bool)
        seeds = self._seed_image(shape, clicks, user_seeds)
        if not (seeds == TARGET).any():
            return Prediction(np.zeros(shape, dtype=bool), user_seeds, 0.0)
        labels = self._grow(image_state, seeds)
        return Prediction(labels == TARGET, user_seeds, 1.0)

    def _seed_image(self, shape: tuple, clicks: list, user_seeds: np.ndarray) -> np.ndarray:
        """uint8 (H, W): 0 unknown, 1 target, 2 background."""
        radius = seed_radius(shape)
        seeds = np.zeros(shape, dtype=np.uint8)
        seeds[0, :] = seeds[-1, :] = seeds[:, 0] = seeds[:, -1] = BACKGROUND
        negatives = [c for c in clicks if not c.positive]
        if negatives and user_seeds.any():
            far = np.ones(shape, dtype=bool)
            for click in negatives:
                far[click.y, click.x] = False
            clearance = PRIOR_SEED_CLEARANCE * max(shape)
            user_seeds = user_seeds & (ndimage.distance_transform_edt(far) > clearance)
        seeds[user_seeds] = TARGET
        for click in clicks:
            _paint(seeds, click, radius, TARGET if click.positive else BACKGROUND)
        return seeds

    def _grow(self, image, seeds: np.ndarray) -> np.ndarray:
        itk = self._itk
        padded = np.pad(seeds, 1, mode="constant")
        seed_image = itk.image_from_array(np.ascontiguousarray(np.repeat(padded[None], 3, axis=0)))
        grow = itk.FastGrowCut[type(image), type(seed_image)].New()
        grow.SetInput(image)
        grow.SetSeedImage(seed_image)
        grow.SetDistancePenalty(self.distance_penalty)
        grow.Update()
        return itk.array_from_image(grow.GetOutput())[1, 1:-1, 1:-1]


def _paint(seeds: np.ndarray, click: Click, radius: int, label: int) -> None:
    rows, cols = seeds.shape
    dy, dx = disk_offsets(radius)
    y, x = dy + click.y, dx + click.x
    inside = (y >= 0) & (y < rows) & (x >= 0) & (x < cols)
    seeds[y[inside], x[inside]] = label


def build(**options) -> GrowCutSegmenter:
    return GrowCutSegmenter(**options)
