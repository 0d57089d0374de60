"""Mask and image codecs: exact round trips, small deltas, and a strict decoder."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from ibisagent import mask_codec
from ibisagent.image_codec import ImageCodecError, decode_image, encode_image
from ibisagent.mask_codec import HEADER_SIZE, MaskCodecError, decode_mask, encode_mask

masks = st.tuples(st.integers(1, 40), st.integers(1, 40)).flatmap(
    lambda shape: st.tuples(arrays(bool, shape), arrays(bool, shape))
)


@settings(max_examples=60, deadline=None)
@given(masks)
def test_full_and_delta_round_trip_exactly(pair):
    base, new = pair
    assert np.array_equal(decode_mask(encode_mask(new)), new)
    assert np.array_equal(decode_mask(encode_mask(new, base=base), base=base), new)


def test_unchanged_mask_is_a_header_only_delta():
    mask = np.zeros((512, 512), bool)
    mask[100:200, 100:200] = True
    data = encode_mask(mask, base=mask.copy())
    assert len(data) == HEADER_SIZE
    assert np.array_equal(decode_mask(data, base=mask), mask)


def test_a_typical_step_delta_is_tiny_compared_with_the_raw_mask():
    yy, xx = np.ogrid[:512, :512]
    before = (yy - 256) ** 2 + (xx - 256) ** 2 <= 60 ** 2
    after = before | ((yy - 300) ** 2 + (xx - 330) ** 2 <= 30 ** 2)
    data = encode_mask(after, base=before)
    assert len(data) < 512 * 512 / 100


def _tamper(data: bytes, offset: int, fmt: str, value) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d[:10], "header alone"),
        (lambda d: b"XXXX" + d[4:], "magic"),
        (lambda d: _tamper(d, 4, "<B", 9), "version 9"),
        (lambda d: _tamper(d, 5, "<B", 7), "kind 7"),
        (lambda d: _tamper(d, 6, "<H", 1), "reserved"),
        (lambda d: _tamper(d, 8, "<I", 0), "empty or larger"),
        (lambda d: _tamper(d, 24, "<I", 9), "does not fit"),
        (lambda d: _tamper(d, 24, "<I", 4), "whole mask"),
        (lambda d: d + b"\0", "payload bytes"),
        (lambda d: d[:HEADER_SIZE] + b"\0" * (len(d) - HEADER_SIZE), "zlib"),
        (lambda d: _tamper(d, 36, "<I", 12345), "CRC"),
    ],
)
def test_decoder_names_what_is_wrong(mutate, message):
    mask = np.eye(8, dtype=bool)
    with pytest.raises(MaskCodecError, match=message):
        decode_mask(mutate(encode_mask(mask)))


def test_delta_needs_the_right_base():
    base, new = np.zeros((8, 8), bool), np.eye(8, dtype=bool)
    data = encode_mask(new, base=base)
    with pytest.raises(MaskCodecError, match="base mask it was made against"):
        decode_mask(data)
    with pytest.raises(MaskCodecError, match="different base"):
        decode_mask(data, base=~base)


def test_payload_that_inflates_too_far_is_refused():
    mask = np.zeros((8, 8), bool)
    header = bytearray(encode_mask(mask)[:HEADER_SIZE])
    bomb = zlib.compress(b"\0" * 100000)
    struct.pack_into("<I", header, 40, len(bomb))
    with pytest.raises(MaskCodecError, match="inflate"):
        decode_mask(bytes(header) + bomb)


def test_encoder_refuses_non_bool():
    with pytest.raises(MaskCodecError, match="2D bool"):
        encode_mask(np.zeros((4, 4), np.uint8))
    assert mask_codec.mask_crc(np.ones((3, 3), bool)) != mask_codec.mask_crc(np.zeros((3, 3), bool))


def test_image_round_trip_and_errors():
    image = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    fields = encode_image(image)
    assert np.array_equal(decode_image(**fields), image)
    with pytest.raises(ImageCodecError, match="dtype"):
        decode_image(**dict(fields, dtype="float32"))
    with pytest.raises(ImageCodecError, match="exactly"):
        decode_image(**dict(fields, rows=6))
    with pytest.raises(ImageCodecError, match="base64"):
        decode_image(**dict(fields, data="***"))
    with pytest.raises(ImageCodecError, match="RGB uint8"):
        encode_image(image.astype(np.float32))
