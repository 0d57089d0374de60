"""The `watershed` peer: SimpleITK's marker watershed on the image's gradient, seeded as a Slicer
user paints seeds (its behaviour with clicks and a user's mask: test_slicer_seeds.py)."""

from __future__ import annotations

import numpy as np
import pytest

from ibisagent.clicks import Click
from ibisagent.metrics import iou
from ibisagent.segmenters import build_segmenter
from ibisagent.segmenters.watershed import WatershedSegmenter


def test_registry_name_builds_it_and_refuses_options():
    assert isinstance(build_segmenter("watershed"), WatershedSegmenter)
    with pytest.raises(ValueError, match="no option"):
        build_segmenter("watershed", sigma=2)


def test_an_edge_seen_only_in_colour_is_followed(disk):
    # Two colours of the same luminance (0.299 R + 0.587 G + 0.114 B = 61.4): only the green and
    # blue channels see the disk's edge.
    truth = disk((64, 64), 30)
    rng = np.random.default_rng(1)
    colours = np.where(truth[:, :, None], [100.0, 60.0, 230.0], [100.0, 100.0, 24.0])
    image = np.clip(np.rint(colours + rng.normal(0.0, 6.0, colours.shape)), 0, 255).astype(np.uint8)
    luminance = image.astype(float) @ [0.299, 0.587, 0.114]
    assert abs(luminance[truth].mean() - luminance[~truth].mean()) < 1.0
    tool = WatershedSegmenter()
    tool.set_image(image)
    assert iou(tool.predict([Click(60, 70, True)]).mask, truth) >= 0.95


def test_image_state_round_trip_keeps_each_image(disk, grey_rgb):
    left, right = disk((40, 64), 20), disk((90, 64), 20)
    tool = WatershedSegmenter()
    tool.set_image(grey_rgb(np.where(left, 190.0, 50.0)))
    first = tool.image_state()
    tool.set_image(grey_rgb(np.where(right, 190.0, 50.0)))
    tool.use_image_state(first)
    assert iou(tool.predict([Click(40, 64, True)]).mask, left) >= 0.95
