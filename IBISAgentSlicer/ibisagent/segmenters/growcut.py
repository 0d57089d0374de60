"""`growcut`: Slicer's "Grow from seeds" (FastGrowCut, PyPI ``itk-growcut``) driven by clicks.

This is a peer the `graphcut` tool is measured against: what a Slicer user gets today without
AI. It runs FastGrowCut on the seeds a careful user would paint for these clicks
(`slicer_seeds.seed_image`): click disks, the image border as background from scratch, and in
"continue my mask" the user's mask eroded as target and the outside of its dilation as
background, so only the band around the user's boundary, and the area around a click that
contradicts the mask, is grown again.

The user's mask is the *anchor*: it is returned as the prediction state and every later step
seeds from it again, not from FastGrowCut's previous output, because reseeding from the tool's
own result would freeze each of its mistakes into seeds. From scratch the anchor is empty.

FastGrowCut only takes 3D scalar images of at least 3 voxels per side and never labels the
outermost voxels, so the grey image (luminance for colour images) is padded by one pixel in-plane
and stacked three slices deep; only the middle slice is read back.
"""

from __future__ import annotations

import numpy as np

from .slicer_seeds import SeededSegmenter


def _import_itk():
    try:
        import itk
    except ImportError as error:
        raise ImportError("The growcut tool needs FastGrowCut: pip install itk-growcut") from error
    if not hasattr(itk, "FastGrowCut"):
        raise ImportError("ITK is installed without FastGrowCut: pip install itk-growcut")
    return itk


class FastGrowCut:
    """FastGrowCut as Slicer's Grow from seeds runs it, for both growcut tools (2D here, 3D in
    `ibisagent.segmenters.volume_growcut`). ``itk``: the module, to make its images.
    ``distance_penalty``: FastGrowCut's "seed locality", 0 as in Slicer's default."""

    def __init__(self, distance_penalty: float = 0.0) -> None:
        self.itk = _import_itk()
        self.distance_penalty = float(distance_penalty)

    def grow(self, image, seeds) -> np.ndarray:
        """The labels FastGrowCut gives every voxel of ITK ``image`` from ITK ``seeds``
        (`slicer_seeds` labels, same grid), as an array in ITK's [k, j, i] order."""
        grow = self.itk.FastGrowCut[type(image), type(seeds)].New()
        grow.SetInput(image)
        grow.SetSeedImage(seeds)
        grow.SetDistancePenalty(self.distance_penalty)
        grow.Update()
        return self.itk.array_from_image(grow.GetOutput())


class GrowCutSegmenter(SeededSegmenter):
    name = "growcut"
    description = "Slicer's Grow from seeds (FastGrowCut, itk-growcut), seeded from clicks; CPU, no weights"

    def __init__(self, distance_penalty: float = 0.0) -> None:
        super().__init__()
        self._growcut = FastGrowCut(distance_penalty)

    def _embed(self, image: np.ndarray) -> object:
        grey = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        padded = np.pad(grey, 1, mode="edge")
        return self._growcut.itk.image_from_array(np.ascontiguousarray(np.repeat(padded[None], 3, axis=0)))

    def _flood(self, image, seeds: np.ndarray) -> np.ndarray:
        padded = np.pad(seeds, 1, mode="constant")
        labels = self._growcut.itk.image_from_array(np.ascontiguousarray(np.repeat(padded[None], 3, axis=0)))
        return self._growcut.grow(image, labels)[1, 1:-1, 1:-1]


def build(**options) -> GrowCutSegmenter:
    return GrowCutSegmenter(**options)
