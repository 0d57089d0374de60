"""Synthetic images for the segmentation-tool tests: bright disks on a dark, noisy background."""

from __future__ import annotations

from typing import Tuple

import numpy as np
import pytest

SIZE = 128


def disk(centre: Tuple[int, int], radius: float, size: int = SIZE) -> np.ndarray:
    """bool (size, size), True within ``radius`` pixels of ``centre`` given as (x, y)."""
    rows, cols = np.mgrid[:size, :size]
    return (cols - centre[0]) ** 2 + (rows - centre[1]) ** 2 <= radius ** 2


def grey_rgb(values: np.ndarray, noise: float = 8.0, seed: int = 0) -> np.ndarray:
    """RGB uint8 (H, W, 3) with three equal channels: ``values`` plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    noisy = np.clip(values + rng.normal(0.0, noise, values.shape), 0, 255)
    return np.repeat(np.rint(noisy).astype(np.uint8)[:, :, None], 3, axis=2)


@pytest.fixture(name="disk")
def disk_fixture():
    """The `disk` helper, for tests that build their own scenes."""
    return disk


@pytest.fixture(name="grey_rgb")
def grey_rgb_fixture():
    """The `grey_rgb` helper, for tests that build their own scenes."""
    return grey_rgb


@pytest.fixture
def disk_scene():
    """(image RGB uint8, truth bool): one bright disk of radius 30 at (64, 64)."""
    truth = disk((64, 64), 30)
    return grey_rgb(np.where(truth, 190.0, 50.0)), truth
