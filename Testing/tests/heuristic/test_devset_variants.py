"""The held-out halves and stress starts that benchmarks/heuristic_devset.py judges the heuristic
policy on: fixed by the case names, of the kinds they claim, the same on every run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
import devset_variants as variants
from ibisagent.metrics import iou

SIZE = 120


def _truth():
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return (yy - 60) ** 2 + (xx - 55) ** 2 <= 30 ** 2


def _image(truth):
    rng = np.random.default_rng(1)
    grey = np.clip(np.where(truth, 180.0, 60.0) + rng.normal(0.0, 6.0, truth.shape), 0, 255)
    return np.repeat(grey.astype(np.uint8)[:, :, None], 3, axis=2)


def test_halves_alternate_within_each_group_by_sorted_name():
    names = ["ct_c", "ct_a", "ct_b", "mri_b", "mri_a", "us_x"]
    half = variants.halves(names)
    assert half == {"ct_a": "A", "ct_b": "B", "ct_c": "A", "mri_a": "A", "mri_b": "B", "us_x": "A"}
    assert variants.halves(reversed(names)) == half  # the order given does not matter


@pytest.mark.parametrize("kind", variants.ROUGH_KINDS)
def test_rough_starts_are_deterministic_and_of_their_kind(kind):
    truth = _truth()
    start = variants.rough_start("ct_case_1", kind, truth)
    assert np.array_equal(start, variants.rough_start("ct_case_1", kind, truth))
    assert start.dtype == bool and start.shape == truth.shape and 0.5 < iou(start, truth) < 1.0
    if kind in ("leak", "dilate8"):
        assert (start >= truth).all() and start.sum() > truth.sum()
    if kind in ("notch", "erode8"):
        assert (start <= truth).all() and start.sum() < truth.sum()
    if kind == "shift":
        assert start.sum() == truth.sum()
    if kind == "near":
        assert iou(start, truth) > 0.9


def test_changed_images_keep_the_expert_mask_right():
    truth = _truth()
    image = _image(truth)
    photo, same = variants.changed_image("ct_case_1", "truth~photo", image, truth)
    assert photo.shape == image.shape and photo.dtype == np.uint8 and not np.array_equal(photo, image)
    assert np.array_equal(same, truth)
    small, mask = variants.changed_image("ct_case_1", "truth~small", image, truth)
    assert small.shape == (84, 84, 3) and mask.shape == (84, 84)
    assert abs(mask.mean() - truth.mean()) < 0.01
    with pytest.raises(ValueError):
        variants.changed_image("ct_case_1", "upside-down", image, truth)
