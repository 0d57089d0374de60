"""The graphcut tool's colour models (`appearance`): what they learn the target and the
background look like, from the mask and the clicks."""

import numpy as np

from ibisagent.segmenters.appearance import ColourBins, likelihood_ratio


def _scene(size=128):
    """A large bright organ (rows 20-107) on a dark background, with mild noise."""
    rng = np.random.default_rng(3)
    grey = np.full((size, size), 40.0) + rng.normal(0, 4, (size, size))
    organ = np.zeros((size, size), bool)
    organ[20:108, 20:108] = True
    grey[organ] += 120
    return ColourBins.of(np.clip(grey, 0, 255)[..., None]), organ


def _disk(shape, y, x, radius=2):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - y) ** 2 + (xx - x) ** 2 <= radius ** 2


def test_a_mask_that_is_only_click_disks_is_not_a_background_model():
    """After a first click that claimed nothing but its own disk, the ring around that disk is
    the organ itself, not background: the background must still come from the whole image, so
    the organ keeps a positive ratio and the next click can grow into it."""
    colours, organ = _scene()
    seeds = _disk(organ.shape, 64, 64) | _disk(organ.shape, 64, 80)
    window = (slice(0, 128), slice(0, 128))
    ratio = likelihood_ratio(colours, seeds.copy(), seeds, np.zeros_like(seeds), window)
    far = organ & ~np.pad(np.ones((40, 40), bool), 44)  # organ pixels well away from the clicks
    assert np.median(ratio[far]) > 0.5
    assert np.median(ratio[~organ]) < -1.0


def test_a_real_mask_teaches_its_core_against_its_ring():
    """With a mask that is more than the clicks, its ring is the background: a mask that covers
    only part of the organ makes the rest of the organ look like background (the user's mask is
    evidence), unlike the click disks of the test above."""
    colours, organ = _scene()
    mask = np.zeros_like(organ)
    mask[50:78, 50:78] = True  # part of the organ, much more than a click disk
    seeds = _disk(organ.shape, 64, 64)
    ratio = likelihood_ratio(colours, mask, seeds, np.zeros_like(seeds), (slice(0, 128), slice(0, 128)))
    far = organ & ~np.pad(np.ones((40, 40), bool), 44)
    assert np.median(ratio[far]) <= 0.5
