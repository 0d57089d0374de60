"""The seed image a 3D Slicer user would paint for a seeded tool (Grow from seeds, a marker
watershed) from their clicks and, in "continue my mask", from their own mask.

The peers `growcut` and `watershed` are measured as a careful Slicer user would run them, so both
read the same seeds (uint8 (H, W): `UNKNOWN`, `TARGET`, `BACKGROUND`):

- From scratch (no mask, or an empty one): a click alone cannot say where the background is, so
  the image border (one pixel wide) is background, as a user would paint a background stroke.
- Continue my mask: the user's mask eroded by a *band* is target and everything outside its
  dilation by the band is background; the band around the user's boundary is left for the tool
  to decide. The band is `BAND_SHARE` of the mask's equivalent radius, at least two seed radii.
- A click that contradicts the mask (a negative click on target seeds, a positive one on
  background seeds) makes the user erase the mask's seeds of the other label around it: within
  the mask's equivalent radius (at least two seed radii), so the tool re-decides that area.
- Every click is then painted as a disk of `click_reach.seed_radius` pixels with its label, in
  click order (a later click paints over an earlier one where disks overlap).

`SeededSegmenter` is the step both peers share: keep the user's mask as the anchor, paint the
seeds, and let the tool's own `_flood` label the rest.
"""

from __future__ import annotations

import abc
from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from ..clicks import Click
from .base import Prediction, Segmenter
from .click_reach import disk_offsets, seed_radius

UNKNOWN, TARGET, BACKGROUND = 0, 1, 2
#: The band around the user's boundary is this share of the mask's equivalent radius.
BAND_SHARE = 0.1
#: A contradicting click clears the mask's seeds within this many equivalent radii of it.
CLEARANCE_SHARE = 1.0


def seed_image(shape: Tuple[int, int], clicks: Sequence[Click], user_mask: Optional[np.ndarray] = None) -> np.ndarray:
    """uint8 (H, W) of `UNKNOWN` / `TARGET` / `BACKGROUND`: the seeds for ``clicks`` on an image
    of ``shape``, continuing ``user_mask`` (bool (H, W)) when it is given and not empty."""
    seeds = np.full(shape, UNKNOWN, dtype=np.uint8)
    if user_mask is None or not user_mask.any():
        seeds[0, :] = seeds[-1, :] = seeds[:, 0] = seeds[:, -1] = BACKGROUND
    else:
        band, clearance = band_and_clearance(user_mask)
        target = ndimage.distance_transform_edt(user_mask) > band
        background = ndimage.distance_transform_edt(~user_mask) > band
        target &= _far_from([c for c in clicks if not c.positive], shape, clearance)
        background &= _far_from([c for c in clicks if c.positive], shape, clearance)
        seeds[target] = TARGET
        seeds[background] = BACKGROUND
    radius = seed_radius(shape)
    for click in clicks:
        paint_click(seeds, click, radius, TARGET if click.positive else BACKGROUND)
    return seeds


def user_mask(shape: Tuple[int, int], prior_mask: Optional[np.ndarray], prior_state: Optional[np.ndarray]) -> np.ndarray:
    """The mask the user's seeds come from, bool (H, W): the one kept as the prediction state
    when there is one, else the prior mask (the user's own on a first step), else none (empty).
    The seeded tools return it as their state, so every step reseeds from the user's mask and
    never from the tool's previous output."""
    if prior_state is not None:
        return np.asarray(prior_state, dtype=bool)
    if prior_mask is not None:
        return np.asarray(prior_mask, dtype=bool)
    return np.zeros(shape, dtype=bool)


def band_and_clearance(user_mask: np.ndarray) -> Tuple[int, float]:
    """(half-width in pixels of the undecided band around the user's boundary, the distance in
    pixels within which a contradicting click clears the mask's seeds) for a non-empty mask."""
    radius = np.sqrt(np.count_nonzero(user_mask) / np.pi)
    least = 2 * seed_radius(user_mask.shape)
    return max(least, int(round(BAND_SHARE * radius))), max(float(least), CLEARANCE_SHARE * radius)


def paint_click(seeds: np.ndarray, click: Click, radius: int, label: int) -> None:
    """Set the pixels of ``seeds`` within ``radius`` of ``click`` (clipped to the image) to ``label``."""
    rows, cols = seeds.shape
    dy, dx = disk_offsets(radius)
    y, x = dy + click.y, dx + click.x
    inside = (y >= 0) & (y < rows) & (x >= 0) & (x < cols)
    seeds[y[inside], x[inside]] = label


def _far_from(clicks: Sequence[Click], shape: Tuple[int, int], distance: float) -> np.ndarray:
    """bool (H, W): True farther than ``distance`` pixels from every click (all True for none)."""
    if not clicks:
        return np.ones(shape, dtype=bool)
    away = np.ones(shape, dtype=bool)
    for click in clicks:
        away[click.y, click.x] = False
    return ndimage.distance_transform_edt(away) > distance


class SeededSegmenter(Segmenter):
    """A tool that labels the image from the seeds a Slicer user would paint. The user's mask is
    the anchor returned as the prediction state, so every step seeds from it again rather than
    from the tool's previous result; only negative clicks (no target seed) give an empty mask."""

    def _predict(
        self,
        image_state: object,
        clicks: list,
        prior_mask: Optional[np.ndarray],
        prior_state: Optional[np.ndarray],
    ) -> Prediction:
        shape = self.image_shape
        anchor = user_mask(shape, prior_mask, prior_state)
        seeds = seed_image(shape, clicks, anchor)
        if not (seeds == TARGET).any():
            return Prediction(np.zeros(shape, dtype=bool), anchor, 0.0)
        return Prediction(self._flood(image_state, seeds) == TARGET, anchor, 1.0)

    @abc.abstractmethod
    def _flood(self, image_state: object, seeds: np.ndarray) -> np.ndarray:
        """The label (`TARGET` or `BACKGROUND`) of every pixel, (H, W), grown from ``seeds``."""
