"""Binary encoding of 2D boolean masks for the wire: bit-packed, zlib-compressed, and optionally
only the part that changed since a base mask both ends already hold.

Standard library + numpy only; imports on Python 3.9. No pickle.

Format, version 1 (all integers unsigned little-endian)::

    offset size  field
     0      4    magic b"IBMK"
     4      1    version = 1
     5      1    kind: 0 = full mask, 1 = delta against a base mask
     6      2    reserved = 0
     8      4    rows of the whole mask (H)
    12      4    cols of the whole mask (W)
    16      4    box top row
    20      4    box left col
    24      4    box rows
    28      4    box cols
    32      4    CRC-32 of the base mask (0 for a full mask)
    36      4    CRC-32 of the resulting mask
    40      4    payload length in bytes
    44      ...  payload: zlib(packbits(box, bit order little, row-major))

A full mask's box is the whole image and the payload holds its bits. A delta's payload holds the
XOR of the new and base masks inside the box, the smallest one holding every changed pixel, so
the usual step (one blob grows) costs a few hundred bytes. An unchanged mask is a delta with an
empty box and no payload. The CRC-32 of a mask is that of its packed bits; the base CRC lets the
decoder refuse a delta made against a mask it does not have, and the result CRC proves the
decoded mask is bit-exact.

The decoder checks every field and raises `MaskCodecError` (a ValueError) saying which is wrong.
"""

from __future__ import annotations

import struct
import zlib
from typing import Optional, Tuple

import numpy as np

MAGIC = b"IBMK"
VERSION = 1
FULL = 0
DELTA = 1
#: Largest mask accepted (rows * cols): 32768 x 32768, far beyond any slice.
MAX_PIXELS = 1 << 30

_HEADER = struct.Struct("<4sBBHIIIIIIIII")
HEADER_SIZE = _HEADER.size  # 44


class MaskCodecError(ValueError):
    """The bytes are not a valid mask encoding, or do not fit the base mask given."""


def mask_crc(mask: np.ndarray) -> int:
    """CRC-32 of the mask's packed bits: a cheap fingerprint both ends can compare."""
    return zlib.crc32(_pack(mask))


def encode_mask(mask: np.ndarray, base: Optional[np.ndarray] = None, level: int = 6) -> bytes:
    """Encode a bool (H, W) mask; with ``base`` (same shape), only its change from ``base``."""
    mask = _check_bool_2d(mask, "mask")
    rows, cols = mask.shape
    result_crc = mask_crc(mask)
    if base is None:
        return _assemble(FULL, mask.shape, (0, 0, rows, cols), 0, result_crc, _compress(mask, level))
    base = _check_bool_2d(base, "base mask")
    if base.shape != mask.shape:
        raise MaskCodecError(f"The base mask has shape {base.shape}; the mask has {mask.shape}.")
    changed = mask ^ base
    box = _bounding_box(changed)
    if box is None:
        return _assemble(DELTA, mask.shape, (0, 0, 0, 0), mask_crc(base), result_crc, b"")
    top, left, height, width = box
    payload = _compress(changed[top:top + height, left:left + width], level)
    return _assemble(DELTA, mask.shape, box, mask_crc(base), result_crc, payload)


def decode_mask(data: bytes, base: Optional[np.ndarray] = None) -> np.ndarray:
    """Decode bytes made by `encode_mask`. A delta needs the ``base`` it was made against."""
    header = read_header(data)
    kind, shape, box, base_crc, result_crc, length = header
    top, left, height, width = box
    if kind == FULL:
        mask = _decompress(data[HEADER_SIZE:], height, width)
    else:
        if base is None:
            raise MaskCodecError("This is a delta encoding; the base mask it was made against is needed.")
        base = _check_bool_2d(base, "base mask")
        if base.shape != shape:
            raise MaskCodecError(f"The delta is for a {shape} mask; the base mask has shape {base.shape}.")
        if mask_crc(base) != base_crc:
            raise MaskCodecError("The delta was made against a different base mask (CRC mismatch).")
        mask = base.copy()
        if height:
            mask[top:top + height, left:left + width] ^= _decompress(data[HEADER_SIZE:], height, width)
    if mask_crc(mask) != result_crc:
        raise MaskCodecError("The decoded mask does not match its CRC-32; the data is corrupt.")
    return mask


def read_header(data: bytes) -> Tuple[int, Tuple[int, int], Tuple[int, int, int, int], int, int, int]:
    """Check the header and return (kind, (rows, cols), (top, left, box_rows, box_cols),
    base_crc, result_crc, payload_length)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MaskCodecError(f"Mask data must be bytes; got {type(data).__name__}.")
    if len(data) < HEADER_SIZE:
        raise MaskCodecError(f"Mask data is {len(data)} bytes; the header alone is {HEADER_SIZE}.")
    (magic, version, kind, reserved, rows, cols, top, left, height, width,
     base_crc, result_crc, length) = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MaskCodecError(f"Mask data starts with {bytes(magic)!r}, not the magic {MAGIC!r}.")
    if version != VERSION:
        raise MaskCodecError(f"Mask format version {version} is not supported (this side reads {VERSION}).")
    if kind not in (FULL, DELTA):
        raise MaskCodecError(f"Mask kind {kind} is neither 0 (full) nor 1 (delta).")
    if reserved != 0:
        raise MaskCodecError("The reserved header field is not zero.")
    if rows == 0 or cols == 0 or rows * cols > MAX_PIXELS:
        raise MaskCodecError(f"Mask size {cols}x{rows} is empty or larger than {MAX_PIXELS} pixels.")
    if top + height > rows or left + width > cols:
        raise MaskCodecError(f"The box ({top}, {left}, {height}, {width}) does not fit a {cols}x{rows} mask.")
    if kind == FULL and (top, left, height, width) != (0, 0, rows, cols):
        raise MaskCodecError("A full mask's box must cover the whole mask.")
    if kind == FULL and base_crc != 0:
        raise MaskCodecError("A full mask must have a zero base CRC.")
    if (height == 0) != (width == 0):
        raise MaskCodecError("The box has zero rows or zero cols, but not both.")
    if length != len(data) - HEADER_SIZE:
        raise MaskCodecError(
            f"The header announces {length} payload bytes; {len(data) - HEADER_SIZE} follow it."
        )
    if height == 0 and length != 0:
        raise MaskCodecError("An empty box must have an empty payload.")
    if height and length == 0:
        raise MaskCodecError("A non-empty box needs a payload.")
    return kind, (rows, cols), (top, left, height, width), base_crc, result_crc, length


# -- helpers ----------------------------------------------------------------------------------
def _check_bool_2d(mask: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(mask)
    if array.ndim != 2 or array.dtype != bool:
        raise MaskCodecError(f"The {what} must be a 2D bool array; got {array.dtype} {array.shape}.")
    if array.size == 0 or array.size > MAX_PIXELS:
        raise MaskCodecError(f"The {what} has {array.size} pixels; 1 to {MAX_PIXELS} are allowed.")
    return array


def _pack(bits: np.ndarray) -> bytes:
    return np.packbits(np.ascontiguousarray(bits).reshape(-1), bitorder="little").tobytes()


def _compress(bits: np.ndarray, level: int) -> bytes:
    return zlib.compress(_pack(bits), level)


def _decompress(payload: bytes, height: int, width: int) -> np.ndarray:
    expected = (height * width + 7) // 8
    inflater = zlib.decompressobj()
    try:
        packed = inflater.decompress(bytes(payload), expected + 1)
    except zlib.error as error:
        raise MaskCodecError(f"The mask payload is not valid zlib data ({error}).") from None
    if len(packed) != expected or not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
        raise MaskCodecError(
            f"The mask payload does not inflate to exactly {expected} bytes for a {width}x{height} box."
        )
    bits = np.unpackbits(np.frombuffer(packed, dtype=np.uint8), count=height * width, bitorder="little")
    return bits.astype(bool).reshape(height, width)


def _bounding_box(changed: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    rows = np.flatnonzero(changed.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(changed[rows[0]:rows[-1] + 1].any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def _assemble(kind: int, shape: Tuple[int, int], box: Tuple[int, int, int, int], base_crc: int,
              result_crc: int, payload: bytes) -> bytes:
    rows, cols = shape
    header = _HEADER.pack(MAGIC, VERSION, kind, 0, rows, cols, *box, base_crc, result_crc, len(payload))
    return header + payload
