"""Small labelled images for the training tests (a helper module, not a fixture file)."""

from __future__ import annotations

import numpy as np


def two_blobs(shift: int = 0):
    """(grey uint8 image, bool target): two bright discs on a dark noisy background, so the
    classical tool needs one click per disc."""
    rng = np.random.default_rng(shift)
    yy, xx = np.mgrid[:80, :112]
    target = ((yy - 30) ** 2 + (xx - 30 - shift) ** 2 < 15 ** 2) | ((yy - 50) ** 2 + (xx - 80) ** 2 < 12 ** 2)
    image = np.where(target, 170.0, 60.0) + rng.normal(0, 6, target.shape)
    return image.clip(0, 255).astype(np.uint8), target
