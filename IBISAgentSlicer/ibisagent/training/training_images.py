"""The picture a training sample shows the model: the image with the mask drawn on it.

Two overlays, chosen per export:

- ``inference`` (default): exactly what this product's policies send at run time
  (`ibisagent.imaging.model_view`: (34, 139, 34) blended at 0.4, capped at 262144 pixels), so a
  model trained on it sees the same pictures when it is served here;
- ``reference``: what the reference's RL converter drew (an RGBA (0, 255, 0, 128) layer
  alpha-composited over the image), for continuing from data made that way. A model trained on
  it then sees a different green at run time.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image

from ..imaging import MODEL_MAX_PIXELS, model_size, model_view

INFERENCE = "inference"
REFERENCE = "reference"
OVERLAYS = (INFERENCE, REFERENCE)
DEFAULT_OVERLAY = INFERENCE
#: The reference converter's mask layer.
REFERENCE_RGBA = (0, 255, 0, 128)


def training_image(image_rgb: np.ndarray, mask: Optional[np.ndarray], overlay: str = DEFAULT_OVERLAY,
                   max_pixels: Optional[int] = None) -> Image.Image:
    """RGB picture of ``image_rgb`` (uint8 (H, W, 3)) with ``mask`` (bool (H, W)) drawn in the
    chosen overlay, scaled (aspect kept) to at most ``max_pixels`` (default 262144)."""
    cap = MODEL_MAX_PIXELS if max_pixels is None else int(max_pixels)
    if overlay == INFERENCE:
        return model_view(image_rgb, mask, cap)
    if overlay != REFERENCE:
        raise ValueError(f"Unknown overlay {overlay!r}; choose one of: {', '.join(OVERLAYS)}.")
    picture = Image.fromarray(np.ascontiguousarray(image_rgb)).convert("RGBA")
    if mask is not None and np.any(mask):
        layer = np.zeros(np.asarray(mask).shape + (4,), dtype=np.uint8)
        layer[np.asarray(mask, bool)] = REFERENCE_RGBA
        picture = Image.alpha_composite(picture, Image.fromarray(layer, "RGBA"))
    picture = picture.convert("RGB")
    size = model_size(picture.width, picture.height, cap)
    return picture if size == picture.size else picture.resize(size, Image.BICUBIC)
