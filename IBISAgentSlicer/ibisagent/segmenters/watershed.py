"""`watershed`: a marker-controlled watershed (SimpleITK) on the seeds a Slicer user would paint.

The second peer the `graphcut` tool is measured against, next to `growcut`: the classical
"watershed from markers" anyone can run with SimpleITK or Slicer's Watershed effect. The markers
are `slicer_seeds.seed_image` (click disks; the image border from scratch; in "continue my mask"
the user's eroded mask as target and the outside of its dilation as background), flooded over
the image's edge strength: SimpleITK's ``MorphologicalWatershedFromMarkers`` on the gradient
magnitude (``GradientMagnitudeRecursiveGaussian``, sigma `GRADIENT_SIGMA` pixels) of each colour
channel, the largest of the three at each pixel, so an edge seen in any channel of a colour image
counts as fully as a grey edge.

As in `growcut`, the user's mask is the anchor returned as the prediction state, so every step
floods from the user's seeds again rather than from the previous result.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .slicer_seeds import SeededSegmenter

#: Gaussian sigma (pixels) of the gradient the watershed floods.
GRADIENT_SIGMA = 1.0


class WatershedSegmenter(SeededSegmenter):
    name = "watershed"
    description = "Marker watershed (SimpleITK) on the image's gradient, seeded from clicks; CPU, no weights"

    def _embed(self, image: np.ndarray) -> object:
        return sitk.GetImageFromArray(edge_strength(image))

    def _flood(self, image_state: object, seeds: np.ndarray) -> np.ndarray:
        labels = sitk.MorphologicalWatershedFromMarkers(image_state, sitk.GetImageFromArray(seeds),
                                                        markWatershedLine=False, fullyConnected=False)
        return sitk.GetArrayFromImage(labels)


def edge_strength(image: np.ndarray) -> np.ndarray:
    """float32 (H, W): the largest per-channel gradient magnitude of an RGB image (Gaussian
    sigma `GRADIENT_SIGMA`), the relief a marker watershed floods."""
    magnitudes = [
        sitk.GetArrayFromImage(sitk.GradientMagnitudeRecursiveGaussian(
            sitk.GetImageFromArray(image[..., channel].astype(np.float32)), GRADIENT_SIGMA))
        for channel in range(3)
    ]
    return np.max(magnitudes, axis=0).astype(np.float32)


def build() -> WatershedSegmenter:
    return WatershedSegmenter()
