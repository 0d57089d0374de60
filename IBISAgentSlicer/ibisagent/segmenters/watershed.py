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

from typing import Optional

import numpy as np
import SimpleITK as sitk

from .base import Prediction, Segmenter
from .slicer_seeds import TARGET, seed_image, user_mask

#: Gaussian sigma (pixels) of the gradient the watershed floods.
GRADIENT_SIGMA = 1.0


class WatershedSegmenter(Segmenter):
    name = "watershed"
    description = "Marker watershed (SimpleITK) on the image's gradient, seeded from clicks; CPU, no weights"

    def _embed(self, image: np.ndarray) -> object:
        gradients = [
            sitk.GetArrayFromImage(
                sitk.GradientMagnitudeRecursiveGaussian(sitk.GetImageFromArray(image[..., channel].astype(np.float32)),
                                                        GRADIENT_SIGMA))
            for channel in range(3)
        ]
        return sitk.GetImageFromArray(np.max(gradients, axis=0))

    def _predict(
        self,
        image_state: object,
        clicks: list,
        prior_mask: Optional[np.ndarray],
        prior_state: Optional[np.ndarray],
    ) -> Prediction:
        shape = self.image_shape
        anchor = user_mask(shape, prior_mask, prior_state)
        seeds = seed_image(shape, clicks, anchor)
        if not (seeds == TARGET).any():
            return Prediction(np.zeros(shape, dtype=bool), anchor, 0.0)
        labels = sitk.MorphologicalWatershedFromMarkers(image_state, sitk.GetImageFromArray(seeds),
                                                        markWatershedLine=False, fullyConnected=False)
        return Prediction(sitk.GetArrayFromImage(labels) == TARGET, anchor, 1.0)


def build() -> WatershedSegmenter:
    return WatershedSegmenter()
