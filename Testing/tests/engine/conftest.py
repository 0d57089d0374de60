"""Fixtures for the engine tests: a small synthetic image and its target."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 60, size=(40, 50, 3), dtype=np.uint8)
    pixels[10:30, 15:35] += 150
    return pixels


@pytest.fixture
def truth():
    mask = np.zeros((40, 50), bool)
    mask[10:30, 15:35] = True
    return mask
