"""What target and background look like, learnt from the mask and the clicks: a log-likelihood
ratio of colour (or grey level) for every pixel, as graph-cut segmentation uses it.

Both sides are colour histograms, smoothed over neighbouring bins so a few dozen samples (one
click's disk) already make a usable model, and so a background made of several tissues is
modelled as well as a uniform one.

- Target samples: the mask's core (two pixels in from its edge) plus every positive click's disk.
- Background samples: a ring around the mask (from 2 pixels out to half its radius, at least 5
  pixels) plus every negative click's disk. With no mask yet, or a mask that is nothing but the
  positive clicks' disks (a first click that claimed only itself), the whole image stands in for
  the background: a clicked structure then stands out by how much rarer its colours are
  elsewhere. The ring around bare click disks would be the clicked structure itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

#: Levels per channel: 64 grey levels, or 16 per colour channel (4096 bins).
GREY_LEVELS = 64
COLOUR_LEVELS = 16
#: The ratio is clipped to this many nats either way, so no single colour decides alone.
RATIO_LIMIT = 4.0
#: Probability floor added to both histograms (colours never seen on either side).
FLOOR = 1e-4


@dataclass(frozen=True)
class ColourBins:
    """Every pixel's histogram bin, int (H, W), the bin grid's ``levels`` per channel and
    ``channels`` (1 or 3), and the whole image's bin counts (for the no-mask background)."""

    bins: np.ndarray
    levels: int
    channels: int
    image_counts: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray) -> "ColourBins":
        """Bin float (H, W, C) values in 0..255 (C = 1 grey or 3 colour)."""
        channels = values.shape[-1]
        levels = GREY_LEVELS if channels == 1 else COLOUR_LEVELS
        quantised = np.clip(values * (levels / 256.0), 0, levels - 1).astype(np.int64)
        bins = quantised[..., 0]
        for c in range(1, channels):
            bins = bins * levels + quantised[..., c]
        counts = np.bincount(bins.ravel(), minlength=levels ** channels).astype(np.float64)
        return cls(bins, levels, channels, counts)

    def histogram(self, pixels: Optional[np.ndarray], exclude: Optional[np.ndarray] = None) -> np.ndarray:
        """Smoothed, normalised histogram of the bins of bool (H, W) ``pixels``; with
        ``pixels`` None, of the whole image minus the bool (H, W) ``exclude``."""
        size = self.levels ** self.channels
        if pixels is None:
            counts = self.image_counts - np.bincount(self.bins[exclude], minlength=size)
        else:
            counts = np.bincount(self.bins[pixels], minlength=size).astype(np.float64)
        grid = counts.reshape((self.levels,) * self.channels)
        counts = ndimage.gaussian_filter(grid, 1.0).ravel()
        total = counts.sum()
        return counts / total if total > 0 else np.full(size, 1.0 / size)


def likelihood_ratio(
    colours: ColourBins, mask: np.ndarray, positive_seeds: np.ndarray, negative_seeds: np.ndarray,
    window: tuple, doubted: Optional[np.ndarray] = None,
) -> np.ndarray:
    """float32 array over ``window`` (a pair of slices): log P(colour | target) - log P(colour |
    background), clipped to +-`RATIO_LIMIT`. ``mask`` and the seeds are bool (H, W);
    ``doubted``, bool (H, W), marks where clicks say the mask is wrong: neither side learns
    from the mask there."""
    if (mask & ~positive_seeds).any():
        core, ring = _core_and_ring(mask)
        if doubted is not None:
            core, ring = core & ~doubted, ring & ~doubted
        target = colours.histogram((core | positive_seeds) & ~negative_seeds)
        background = colours.histogram((ring | negative_seeds) & ~positive_seeds)
    else:
        target = colours.histogram(positive_seeds)
        background = colours.histogram(None, exclude=positive_seeds)
    ratio = np.log(target + FLOOR) - np.log(background + FLOOR)
    return np.clip(ratio[colours.bins[window]], -RATIO_LIMIT, RATIO_LIMIT).astype(np.float32)


def _core_and_ring(mask: np.ndarray):
    """The mask's core and the background ring around it, bool (H, W), computed in the mask's
    bounding box grown by the ring's width (nothing beyond it can belong to either)."""
    radius = np.sqrt(np.count_nonzero(mask) / np.pi)
    width = max(5.0, 0.5 * radius)
    margin = int(np.ceil(width)) + 3
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    box = (slice(max(0, rows[0] - margin), rows[-1] + margin + 1),
           slice(max(0, cols[0] - margin), cols[-1] + margin + 1))
    local = mask[box]
    core = np.zeros_like(mask)
    ring = np.zeros_like(mask)
    local_core = ndimage.binary_erosion(local, iterations=2)
    core[box] = local_core if np.count_nonzero(local_core) >= 20 else local
    outside = ndimage.distance_transform_edt(~local)
    ring[box] = (outside > 2) & (outside <= width)
    return core, ring
