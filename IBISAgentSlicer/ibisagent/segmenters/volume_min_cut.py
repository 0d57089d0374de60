"""The minimum cut of a binary labelling on a voxel grid [k, j, i], with scipy's maximum flow.

The 3D counterpart of `min_cut` (same energy; the exact cut is `min_cut.exact_cut`, one scipy Dinic
solver and one integer scaling for both): every free voxel pays a *unary* cost for its label, every pair of
6-neighbours with different labels pays its *pairwise* weight, voxels outside the free set keep
a fixed label (a free voxel beside a fixed one pays that pair's weight when it disagrees, folded
into its unary). 6-neighbours, not 26: the graph is a third of the size, which is what keeps a
click under a second, and the contrast weights already follow the image's edges.

scipy's max-flow time grows faster than the voxel count, so a large problem is solved coarse
to fine (a banded graph cut, as `min_cut.label` does in 2D): the same energy on 2 x 2 x 2 blocks
first (recursively), then exactly again at full resolution in a band of `BAND` voxels around
the coarse boundary. An axis is only halved while its voxels are no longer than
`COARSE_ANISOTROPY` times the finest axis (a CT with 5 mm slices and 0.8 mm pixels is coarsened
in-plane only), so a block stays roughly cubic in millimetres.

PyMaxflow (GPL) is not used for licence reasons.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
from scipy import ndimage

from .min_cut import exact_cut

#: Free voxels up to which the cut is solved exactly in one go.
EXACT_LIMIT = 20000
#: Half-width in voxels of the full-resolution band around a coarse boundary.
BAND = 2
#: An axis is halved only while its voxel size is at most this many times the finest axis's.
COARSE_ANISOTROPY = 1.5


def pair_slices(shape: Tuple[int, int, int], axis: int) -> Tuple[tuple, tuple]:
    """(slices of p, slices of q) selecting every pair q = p + one step along ``axis``."""
    p = [slice(None)] * 3
    q = [slice(None)] * 3
    p[axis] = slice(0, shape[axis] - 1)
    q[axis] = slice(1, shape[axis])
    return tuple(p), tuple(q)


def label(free: np.ndarray, fixed: np.ndarray, unary: np.ndarray, weights: Sequence[np.ndarray],
          spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """The labelling of (nearly) least energy, bool [k, j, i].

    ``free``: bool, voxels decided here. ``fixed``: bool, the label every other voxel keeps.
    ``unary``: float, for a free voxel the cost of False minus the cost of True (positive
    favours True). ``weights``: three float arrays (axes k, j, i), the weight of the pair
    (p, p + one step along that axis) stored at p. ``spacing``: voxel size per axis (mm), only
    used to choose which axes a coarse level may halve.
    """
    factors = _factors(free.shape, spacing)
    if np.count_nonzero(free) <= EXACT_LIMIT or factors == (1, 1, 1):
        return _exact(free, fixed, unary, weights)
    coarse_spacing = tuple(s * f for s, f in zip(spacing, factors))
    coarse = label(*_coarsened(free, fixed, unary, weights, factors), spacing=coarse_spacing)
    guess = coarse
    for axis, factor in enumerate(factors):
        guess = np.repeat(guess, factor, axis=axis)
    guess = guess[: free.shape[0], : free.shape[1], : free.shape[2]]
    guess = np.where(free, guess, fixed)
    changes = np.zeros(free.shape, dtype=bool)
    for axis in range(3):
        p, q = pair_slices(free.shape, axis)
        differ = guess[p] != guess[q]
        changes[p] |= differ
        changes[q] |= differ
    band = ndimage.binary_dilation(changes, iterations=BAND) & free
    return _exact(band, guess, unary, weights)


def _factors(shape, spacing) -> Tuple[int, int, int]:
    finest = min(spacing)
    return tuple(2 if (size >= 8 and s <= COARSE_ANISOTROPY * finest) else 1 for size, s in zip(shape, spacing))


def _coarsened(free, fixed, unary, weights, factors):
    """The same problem on blocks of ``factors`` voxels: a block is free when any of its voxels
    is; its unary sums its free voxels' and, for its fixed voxels, a pull stronger than any free
    voxel's towards their label; block pairs weigh the sum of the voxel pairs between them."""
    shape = free.shape
    half = tuple((size + f - 1) // f for size, f in zip(shape, factors))
    padding = tuple((0, h * f - size) for h, f, size in zip(half, factors, shape))

    def blocks(values: np.ndarray) -> np.ndarray:
        padded = np.pad(values, padding)
        return padded.reshape(half[0], factors[0], half[1], factors[1], half[2], factors[2]).sum(axis=(1, 3, 5))

    strong = 2.0 * max(float(np.abs(unary[free]).max()), 1.0)
    pull = np.where(free, unary, np.where(fixed, strong, -strong))
    coarse_free = blocks(free.astype(np.int32)) > 0
    coarse_fixed = blocks((fixed & ~free).astype(np.int32)) >= blocks((~fixed & ~free).astype(np.int32))
    coarse_weights = []
    for axis, weight in enumerate(weights):
        # Only pairs whose first voxel is the last of its block (along the axis) join two blocks.
        crossing = np.pad(weight.astype(np.float64), padding)
        if factors[axis] == 2:
            index = [slice(None)] * 3
            index[axis] = slice(0, None, 2)
            crossing[tuple(index)] = 0.0
        coarse_weights.append(crossing.reshape(half[0], factors[0], half[1], factors[1], half[2],
                                               factors[2]).sum(axis=(1, 3, 5)))
    return coarse_free, coarse_fixed, blocks(pull), tuple(coarse_weights)


def _exact(free, fixed, unary, weights) -> np.ndarray:
    """The exact minimum cut (see `label`) on the 6-neighbour voxel graph."""
    return exact_cut(free, fixed, unary, [(*pair_slices(free.shape, axis), weight)
                                          for axis, weight in enumerate(weights)])
