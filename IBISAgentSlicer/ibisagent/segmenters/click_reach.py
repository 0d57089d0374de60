"""How far a click, and the user's own boundary, may change a mask: the distance scales of the
classical click tools, all tied to the image, the object or the click itself.

- A click stands for a disk of `seed_radius` pixels (what a painted seed covers).
- An object's *scale* is its equivalent radius, or its mean thickness (2 x area / perimeter)
  when that is smaller, so a vessel tree counts as thin, not as a disk the size of its area.
- The user's boundary is uncertain within a *band* of a tenth of the object's radius (at least
  two seed radii), but never more than a quarter of its thickness, so a thin structure is not
  re-decided as a whole.
- A click that contradicts the mask *reaches* at least twice its distance to the region it
  extends (a positive click outside the mask: its distance to the mask) and at least the
  object's scale; its pull towards its own label fades over that distance. A click made before
  any object exists reaches a fixed share of the image; that reach is *provisional* and shrinks
  to a few object scales once the object is there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
from scipy import ndimage

#: A contradicting click reaches this many times its distance to the region it extends.
DISTANCE_REACH = 2.0
#: Before any object exists, a click reaches this share of the image's larger side...
OPENING_REACH = 0.3
#: ...and pulls towards its label over this share of it.
OPENING_PULL = 0.25
#: Once the object exists, an opening click reaches at most this many object scales.
OPENING_CAP = 2.5
#: The band is this share of the object's radius...
BAND_SHARE = 0.1
#: ...but at most this share of its thickness.
BAND_THICKNESS_SHARE = 0.25


def seed_radius(shape: Tuple[int, int]) -> int:
    """Radius in pixels of the disk a click stands for: 1 px per 128 px of the larger side, at
    least 1 (2 px on a 233-pixel slice, 4 px at 512)."""
    return max(1, int(round(max(shape) / 128.0)))


def disk_offsets(radius: int) -> Tuple[np.ndarray, np.ndarray]:
    """(row offsets, column offsets) of the pixels within ``radius`` of a centre pixel."""
    dy, dx = np.mgrid[-radius: radius + 1, -radius: radius + 1]
    inside = dy * dy + dx * dx <= radius * radius
    return dy[inside], dx[inside]


def object_scale(mask: np.ndarray) -> float:
    """The object's size for local edits, in pixels: min(equivalent radius, mean thickness)."""
    area = float(np.count_nonzero(mask))
    if area == 0:
        return 0.0
    edge = np.count_nonzero(mask & ~ndimage.binary_erosion(mask))
    return min(np.sqrt(area / np.pi), 2.0 * area / max(edge, 1))


def band_width(mask: np.ndarray) -> int:
    """Half-width in pixels of the band around the user's boundary where clicks decide."""
    area = float(np.count_nonzero(mask))
    edge = np.count_nonzero(mask & ~ndimage.binary_erosion(mask))
    thickness = 2.0 * area / max(edge, 1)
    wanted = max(2.0 * seed_radius(mask.shape), BAND_SHARE * np.sqrt(area / np.pi))
    return max(1, int(round(min(wanted, BAND_THICKNESS_SHARE * thickness))))


@dataclass(frozen=True)
class Reach:
    """A click's region of influence: it may change pixels within ``radius`` and pulls towards
    its label with a Gaussian of width ``pull`` (pixels). ``opening``: made before any object
    existed, so the radius is provisional (see `Reach.now`)."""

    x: int
    y: int
    positive: bool
    radius: float
    pull: float
    opening: bool = False

    def now(self, mask: np.ndarray) -> "Reach":
        """This reach given the current mask: an opening click's shrinks to the object's size."""
        if not self.opening or not mask.any():
            return self
        scale = object_scale(mask)
        cap = max(2.0 * seed_radius(mask.shape), OPENING_CAP * scale)
        return Reach(self.x, self.y, self.positive, min(self.radius, cap), min(self.pull, max(2.0, scale)), True)


def reach_of(x: int, y: int, positive: bool, mask: np.ndarray, anchor: np.ndarray) -> Reach:
    """The reach of a click at (x, y) made when the mask was ``mask`` (bool (H, W)); ``anchor``
    is the mask the clicks edit (the user's own, or empty)."""
    shape = mask.shape
    seed = seed_radius(shape)
    if bool(mask[y, x]) == positive:  # agrees with the mask: a seed, nothing to reach for
        return Reach(x, y, positive, 2.0 * seed, float(seed))
    extends = mask if positive else ~mask
    if not extends.any():
        side = float(max(shape))
        return Reach(x, y, positive, OPENING_REACH * side, OPENING_PULL * side, opening=True)
    distance = _distance_to(extends, x, y)
    reference = mask if np.count_nonzero(mask) >= np.count_nonzero(anchor) else anchor
    radius = max(2.0 * seed, DISTANCE_REACH * distance, object_scale(reference))
    return Reach(x, y, positive, float(radius), float(max(2.0, distance)))


def _distance_to(region: np.ndarray, x: int, y: int) -> float:
    """Euclidean distance in pixels from (x, y) to the nearest pixel of ``region``."""
    rows, cols = np.nonzero(region)
    return float(np.sqrt(((rows - y) ** 2 + (cols - x) ** 2).min()))
