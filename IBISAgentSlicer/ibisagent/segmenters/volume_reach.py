"""How far a 3D click, and the user's own boundary, may change a volume mask: the 3D
counterparts of `click_reach`, measured in millimetres so anisotropic volumes (5 mm CT slices
of 0.8 mm pixels) are treated by physical distance, not by voxel count.

- A click stands for a ball of `SEED_RADIUS_VOXELS` voxels of the finest axis (what a painted
  seed covers; on 5 mm slices of 0.8 mm pixels, a disk on the clicked slice).
- An object's *scale* is its equivalent sphere radius, or its mean thickness (3 x volume /
  surface: the radius for a sphere) when that is smaller, so a thin sheet or a vessel counts as
  thin.
- The user's boundary is uncertain within a *band* of `BAND_SHARE` of the object's radius (at
  least two seed radii), never more than `BAND_THICKNESS_SHARE` of its thickness.
- A click that contradicts the mask *reaches* `DISTANCE_REACH` times its distance to the region
  it extends and at least the object's scale, and pulls towards its label over that distance;
  a click before any object exists reaches `OPENING_REACH` of the volume's largest extent
  (``opening``; `volume_graphcut` starts such a click in a box around it instead).

Every distance here is an exact Euclidean distance transform (scipy) with the voxel spacing,
computed in a box around what it measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

#: A click's seed ball has this radius in voxels of the finest axis.
SEED_RADIUS_VOXELS = 2
DISTANCE_REACH = 2.0
OPENING_REACH = 0.3
BAND_SHARE = 0.1
BAND_THICKNESS_SHARE = 0.25

Box = Tuple[slice, slice, slice]


def seed_radius_mm(spacing: Sequence[float]) -> float:
    return SEED_RADIUS_VOXELS * float(min(spacing))


def bounding_box(mask: np.ndarray, margin_mm: float, spacing: Sequence[float]) -> Optional[Box]:
    """The bounding box of ``mask`` grown by ``margin_mm`` on every side (at least one voxel),
    clipped to the array; None for an empty mask."""
    if not mask.any():
        return None
    box = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(mask.any(axis=others))
        grow = int(np.ceil(margin_mm / spacing[axis])) + 1
        box.append(slice(max(0, present[0] - grow), min(mask.shape[axis], present[-1] + grow + 1)))
    return tuple(box)


def union_box(a: Optional[Box], b: Optional[Box]) -> Optional[Box]:
    if a is None or b is None:
        return a if b is None else b
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def ball_box(centre: Sequence[int], radius_mm: float, spacing: Sequence[float], shape: Sequence[int]) -> Box:
    return tuple(slice(max(0, c - int(radius_mm / s)), min(n, c + int(radius_mm / s) + 1))
                 for c, s, n in zip(centre, spacing, shape))


def squared_distance_mm(box: Box, centre: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """float32 over ``box``: squared distance in mm^2 of every voxel from ``centre``."""
    axes = [((np.arange(b.start, b.stop, dtype=np.float32) - c) * np.float32(s)) ** 2
            for b, c, s in zip(box, centre, spacing)]
    return axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :]


def add_ball(target: np.ndarray, centre: Sequence[int], radius_mm: float, spacing: Sequence[float]) -> None:
    """Set the voxels of ``target`` within ``radius_mm`` of ``centre`` (clipped to the array)."""
    box = ball_box(centre, radius_mm, spacing, target.shape)
    target[box] |= squared_distance_mm(box, centre, spacing) <= radius_mm * radius_mm


def object_scale(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """min(equivalent sphere radius, mean thickness) of ``mask`` in mm (0 for an empty mask)."""
    count = np.count_nonzero(mask)
    if count == 0:
        return 0.0
    voxel = float(np.prod(spacing))
    volume = count * voxel
    radius = (3.0 * volume / (4.0 * np.pi)) ** (1.0 / 3.0)
    return min(radius, 3.0 * volume / max(surface_area(mask, spacing), 1e-6))


def surface_area(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """The area in mm^2 of the faces between mask voxels and non-mask voxels (a voxel-face count,
    enough for a thickness estimate)."""
    area = 0.0
    for axis in range(3):
        face = float(np.prod([s for a, s in enumerate(spacing) if a != axis]))
        padded = np.pad(mask, [(1, 1) if a == axis else (0, 0) for a in range(3)])
        area += face * np.count_nonzero(np.diff(padded.astype(np.int8), axis=axis))
    return area


def band_width_mm(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Half-width in mm of the band around the user's boundary where clicks decide."""
    count = np.count_nonzero(mask)
    volume = count * float(np.prod(spacing))
    radius = (3.0 * volume / (4.0 * np.pi)) ** (1.0 / 3.0)
    thickness = 3.0 * volume / max(surface_area(mask, spacing), 1e-6)
    wanted = max(2.0 * seed_radius_mm(spacing), BAND_SHARE * radius)
    return max(float(min(spacing)), min(wanted, BAND_THICKNESS_SHARE * thickness))


def band(anchor: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """bool [k, j, i]: voxels within `band_width_mm` of the anchor's boundary, either side
    (none for an empty anchor)."""
    result = np.zeros(anchor.shape, dtype=bool)
    if not anchor.any():
        return result
    width = band_width_mm(anchor, spacing)
    box = bounding_box(anchor, width, spacing)
    local = anchor[box]
    inside = ndimage.distance_transform_edt(local, sampling=spacing)
    outside = ndimage.distance_transform_edt(~local, sampling=spacing)
    result[box] = (inside > 0) & (inside <= width) | (outside > 0) & (outside <= width)
    return result


@dataclass(frozen=True)
class VoxelReach:
    """A click's region of influence: it may change voxels within ``radius`` mm of (k, j, i) and
    pulls towards its label with a Gaussian of width ``pull`` mm."""

    k: int
    j: int
    i: int
    positive: bool
    radius: float
    pull: float
    opening: bool = False

    @property
    def voxel(self) -> Tuple[int, int, int]:
        return (self.k, self.j, self.i)


def reach_of(click, mask: np.ndarray, anchor: np.ndarray, spacing: Sequence[float]) -> VoxelReach:
    """The reach of ``click`` (a `VoxelClick`) made when the mask was ``mask``; ``anchor`` is the
    mask the clicks edit."""
    seed = seed_radius_mm(spacing)
    if bool(mask[click.voxel]) == click.positive:  # agrees with the mask: a seed, nothing to reach for
        return VoxelReach(click.k, click.j, click.i, click.positive, 2.0 * seed, seed)
    extends = mask if click.positive else ~mask
    if not extends.any():
        side = max(n * s for n, s in zip(mask.shape, spacing))
        return VoxelReach(click.k, click.j, click.i, click.positive, OPENING_REACH * side, 0.8 * OPENING_REACH * side,
                          opening=True)
    distance = distance_to(extends, click.voxel, spacing)
    reference = mask if np.count_nonzero(mask) >= np.count_nonzero(anchor) else anchor
    radius = max(2.0 * seed, DISTANCE_REACH * distance, object_scale(reference, spacing))
    return VoxelReach(click.k, click.j, click.i, click.positive, float(radius), float(max(seed, distance)))


def distance_to(region: np.ndarray, voxel: Sequence[int], spacing: Sequence[float]) -> float:
    """Euclidean distance in mm from ``voxel`` to the nearest voxel of ``region`` (non-empty),
    searched in growing boxes so a nearby region costs little."""
    radius = 4.0 * max(spacing)
    extent = max(n * s for n, s in zip(region.shape, spacing))
    while True:
        box = ball_box(voxel, radius, spacing, region.shape)
        local = region[box]
        if local.any():
            best = float(np.sqrt(squared_distance_mm(box, voxel, spacing)[local].min()))
            if best <= radius or radius >= extent:
                return best
        elif radius >= extent:
            raise ValueError("distance_to: the region is empty")
        radius *= 2.0
