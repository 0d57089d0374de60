"""The heuristic's speed shortcuts (a window around the mask, a per-image cache) change no answer."""

from __future__ import annotations

import numpy as np
from ibisagent.clicks import Click
from ibisagent.policies import mask_critique


def _scene(seed=0, size=96):
    """A bright disc on a noisy background, RGB uint8, with a leaky and holed mask of it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    truth = (yy - 48) ** 2 + (xx - 44) ** 2 <= 22 ** 2
    grey = np.where(truth, 190.0, 40.0) + rng.normal(0.0, 8.0, truth.shape)
    image = np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    mask = truth & ~((yy - 40) ** 2 + (xx - 50) ** 2 <= 36)
    mask |= (yy - 48) ** 2 + (xx - 72) ** 2 <= 64
    mask[:, :30] = False  # a missed slice on the left
    return image, mask


def test_window_gives_the_same_candidates_as_the_whole_image(monkeypatch):
    image, mask = _scene()
    clicks = [Click(60, 48, True), Click(44, 48, False)]
    windowed = mask_critique.find_candidates(image, mask, clicks)
    box = mask_critique._window(mask, 5)
    assert box[0].start > 0 or box[1].start > 0  # the window really is smaller than the image
    monkeypatch.setattr(mask_critique, "_window", lambda mask, margin: (slice(None), slice(None)))
    whole = mask_critique.find_candidates(image, mask, clicks)
    assert len(windowed) >= 2 and windowed == whole


def test_cached_image_features_give_the_same_proposal_and_follow_a_changed_image(monkeypatch):
    image, mask = _scene()
    monkeypatch.setattr(mask_critique, "_last_image", (None, None, None))
    cold = mask_critique.find_candidates(image, mask)
    warm = mask_critique.find_candidates(image.copy(), mask)  # a fresh array with the same pixels
    assert cold == warm
    other, _ = _scene(seed=1)
    assert mask_critique.find_candidates(other, mask) != cold
    monkeypatch.setattr(mask_critique, "_last_image", (None, None, None))
    assert mask_critique.find_candidates(other, mask) == mask_critique.find_candidates(other.copy(), mask)


def test_deepest_point_of_a_flat_ridge_is_its_middle():
    labels = np.zeros((9, 21), dtype=np.int32)
    labels[2:7, 2:19] = 1  # a 5-pixel-high bar: depth 3 all along its middle row
    depth, (row, col) = mask_critique._deepest(labels, 1, (slice(2, 7), slice(2, 19)), [])
    assert depth == 3.0 and (row, col) == (4, 10)
