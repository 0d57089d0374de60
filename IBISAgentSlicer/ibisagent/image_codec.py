"""JSON-friendly encoding of the RGB uint8 slice uploaded once per session.

Standard library + numpy only; imports on Python 3.9. No pickle.

An encoded image is the dict ``{"rows": H, "cols": W, "channels": 3, "dtype": "uint8",
"data": base64(zlib(raw bytes, row-major, RGB interleaved))}``. The dtype and channels fields
are explicit so that a wrong array is refused with a message naming what is wrong, not decoded
into noise. Decompression is bounded by the announced size, so a small body cannot inflate
into a huge allocation.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any, Dict

import numpy as np

DTYPE = "uint8"
CHANNELS = 3
#: Largest slice accepted (rows * cols): 16384 x 16384.
MAX_PIXELS = 1 << 28


class ImageCodecError(ValueError):
    """The encoded image is malformed or is not an RGB uint8 2D image."""


def encode_image(image: np.ndarray, level: int = 1) -> Dict[str, Any]:
    """Encode an RGB uint8 (H, W, 3) array; level 1 zlib since it is sent once and must be quick."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != CHANNELS or array.dtype != np.uint8:
        raise ImageCodecError(f"The image must be RGB uint8 with shape (H, W, 3); got {array.dtype} {array.shape}.")
    raw = np.ascontiguousarray(array).tobytes()
    return {
        "rows": int(array.shape[0]),
        "cols": int(array.shape[1]),
        "channels": CHANNELS,
        "dtype": DTYPE,
        "data": base64.b64encode(zlib.compress(raw, level)).decode("ascii"),
    }


def decode_image(rows: int, cols: int, channels: int, dtype: str, data: str) -> np.ndarray:
    """Decode the fields of `encode_image` back into an RGB uint8 (H, W, 3) array."""
    if dtype != DTYPE:
        raise ImageCodecError(f"The image dtype must be {DTYPE!r}; got {dtype!r}. Convert with ibisagent.imaging.to_rgb.")
    if channels != CHANNELS:
        raise ImageCodecError(f"The image must have {CHANNELS} channels (RGB); got {channels}.")
    if rows < 2 or cols < 2 or rows * cols > MAX_PIXELS:
        raise ImageCodecError(f"The image size {cols}x{rows} is outside 2x2 .. {MAX_PIXELS} pixels.")
    try:
        compressed = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ImageCodecError("The image data is not valid base64.") from None
    expected = rows * cols * channels
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(compressed, expected + 1)
    except zlib.error as error:
        raise ImageCodecError(f"The image data is not valid zlib data ({error}).") from None
    if len(raw) != expected or not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
        raise ImageCodecError(f"The image data does not inflate to exactly {expected} bytes ({cols}x{rows} RGB).")
    return np.frombuffer(raw, dtype=np.uint8).reshape(rows, cols, channels).copy()
