"""Turning pixel data into what the model and the segmentation tool see.

Conventions: 2D arrays are indexed [row, col]; RGB images are uint8 (H, W, 3). An 8-bit grey image
(a PNG or JPEG X-ray, ultrasound frame, exported slice) is already what a person looks at, so it is
repeated into three channels unchanged. Other grey data (CT in Hounsfield units, MRI, 16-bit or
float files) is mapped linearly to 0..255 through a window (a CT preset, an explicit (low, high),
or the image's 1st-99th percentile when none is given); a window the user asks for applies to
8-bit images too. Colour images (dermoscopy, pathology, endoscopy) keep their colours.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
from PIL import Image
from scipy import ndimage

#: Overlay drawn for the model: mask pixels become img * (1 - a) + colour * a.
OVERLAY_COLOR = (34, 139, 34)
OVERLAY_ALPHA = 0.4
#: IBISAgent was trained on images of at most this many pixels (about 512 x 512).
MODEL_MAX_PIXELS = 262144

#: Common CT windows in Hounsfield units (low, high).
CT_WINDOWS = {
    "abdomen": (-125.0, 1000.0),  # the window used to build IBISAgent's CT training data
    "soft-tissue": (-160.0, 240.0),
    "liver": (-45.0, 105.0),
    "lung": (-1350.0, 150.0),
    "bone": (-450.0, 1050.0),
    "brain": (0.0, 80.0),
}

Window = Union[None, str, Tuple[float, float]]


def resolve_window(window: Window, pixels: np.ndarray) -> Tuple[float, float]:
    """(low, high) for a preset name, an explicit pair, or None (1st-99th percentile)."""
    if window is None:
        low, high = np.percentile(pixels, [1.0, 99.0])
        if high <= low:  # a mostly flat image with a few bright pixels: use the full range
            low, high = float(pixels.min()), float(pixels.max())
        return float(low), float(high)
    if isinstance(window, str):
        if window not in CT_WINDOWS:
            raise ValueError(f"Unknown window preset {window!r}; choose one of: {', '.join(CT_WINDOWS)}.")
        return CT_WINDOWS[window]
    low, high = (float(v) for v in window)
    if not high > low:
        raise ValueError(f"A window needs low < high; got ({low}, {high}).")
    return low, high


def to_rgb(image: np.ndarray, window: Window = None) -> np.ndarray:
    """Make an RGB uint8 (H, W, 3) view of a grey (H, W) or colour (H, W, 3|4) 2D image.

    Raises ValueError for empty images, NaN or infinite values and images with no contrast,
    since none of them can be segmented meaningfully.
    """
    pixels = np.asarray(image)
    if pixels.size == 0:
        raise ValueError("The image is empty.")
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        return _colour_to_rgb(pixels[..., :3], window)
    if pixels.ndim != 2:
        raise ValueError(f"Expected a 2D grey or colour image; got an array of shape {pixels.shape}.")
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8)
    values = pixels.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("The image contains NaN or infinite values.")
    if values.min() == values.max():
        raise ValueError(f"The image is constant (every pixel is {values.min():g}); there is nothing to segment.")
    if pixels.dtype == np.uint8 and window is None:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    low, high = resolve_window(window, values)
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0) * 255.0
    grey = np.rint(scaled).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _colour_to_rgb(pixels: np.ndarray, window: Window) -> np.ndarray:
    if pixels.dtype == np.uint8 and window is None:
        return np.ascontiguousarray(pixels)
    values = pixels.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("The image contains NaN or infinite values.")
    if values.min() == values.max():
        raise ValueError("The colour image is constant; there is nothing to segment.")
    low, high = resolve_window(window, values) if window is not None else (float(values.min()), float(values.max()))
    return np.rint(np.clip((values - low) / (high - low), 0.0, 1.0) * 255.0).astype(np.uint8)


def check_mask(mask: np.ndarray, shape: Tuple[int, int], what: str = "mask") -> np.ndarray:
    """Return ``mask`` as bool (H, W), or raise ValueError saying why it does not fit."""
    array = np.asarray(mask)
    if array.shape != tuple(shape):
        raise ValueError(f"The {what} has shape {array.shape}, but the image has shape {tuple(shape)}.")
    if array.dtype != bool:
        if not np.issubdtype(array.dtype, np.number):
            raise ValueError(f"The {what} must be numeric or boolean; got {array.dtype}.")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"The {what} contains NaN or infinite values.")
        array = array != 0
    return array


def interior_depth(region: np.ndarray) -> np.ndarray:
    """float64 (H, W): each pixel's Euclidean distance to the nearest pixel outside the bool
    ``region``, the image border counting as outside (the region is padded by one pixel of
    False), so the deepest point of a region touching the edge still lies well inside it."""
    padded = np.pad(region, 1, mode="constant", constant_values=False)
    return ndimage.distance_transform_edt(padded)[1:-1, 1:-1]


def overlay(image_rgb: np.ndarray, mask: Optional[np.ndarray]) -> np.ndarray:
    """The observation IBISAgent was trained on: the mask blended in green, nothing else drawn."""
    if mask is None or not np.any(mask):
        return image_rgb.copy()
    out = image_rgb.astype(np.float32)
    colour = np.asarray(OVERLAY_COLOR, dtype=np.float32)
    out[mask] = out[mask] * (1.0 - OVERLAY_ALPHA) + colour * OVERLAY_ALPHA
    return np.rint(out).astype(np.uint8)


def model_size(width: int, height: int, max_pixels: int = MODEL_MAX_PIXELS) -> Tuple[int, int]:
    """(width, height) scaled down, aspect kept, so width * height <= max_pixels. Never upscales.

    Clicks are normalised to the image shown, so they map back to original pixels exactly
    whatever this size is (see `ibisagent.actions.Action.to_pixel`).
    """
    if width * height <= max_pixels:
        return width, height
    scale = (max_pixels / float(width * height)) ** 0.5
    return max(1, int(width * scale)), max(1, int(height * scale))


def model_view(image_rgb: np.ndarray, mask: Optional[np.ndarray], max_pixels: int = MODEL_MAX_PIXELS) -> Image.Image:
    """The overlay as a PIL image sized for the model."""
    picture = Image.fromarray(overlay(image_rgb, mask))
    size = model_size(picture.width, picture.height, max_pixels)
    if size != picture.size:
        picture = picture.resize(size, Image.BICUBIC)
    return picture
