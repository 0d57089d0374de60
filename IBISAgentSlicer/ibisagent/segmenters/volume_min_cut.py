"""The minimum cut of a binary labelling on a voxel grid [k, j, i], with scipy's maximum flow.

The 3D counterpart of `min_cut` (same energy, same scipy Dinic solver, same integer scaling by
`min_cut.RESOLUTION`): every free voxel pays a *unary* cost for its label, every pair of
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
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import breadth_first_order, maximum_flow

from .min_cut import RESOLUTION

_MAX_CAPACITY = 2 ** 30
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
    """The exact minimum cut (see `label`)."""
    result = fixed.copy()
    where = np.nonzero(free)
    count = where[0].size
    if count == 0:
        return result
    index = np.full(free.shape, -1, dtype=np.int64)
    index[where] = np.arange(count)
    balance = unary[where].astype(np.float64)
    tails, heads, caps = [], [], []
    for axis, weight in enumerate(weights):
        p_sl, q_sl = pair_slices(free.shape, axis)
        p_free, q_free, w = free[p_sl], free[q_sl], weight[p_sl]
        both = p_free & q_free
        tails.append(index[p_sl][both])
        heads.append(index[q_sl][both])
        caps.append(w[both])
        for mine, my_index, their_label in ((p_free & ~q_free, index[p_sl], fixed[q_sl]),
                                            (q_free & ~p_free, index[q_sl], fixed[p_sl])):
            balance += np.bincount(my_index[mine], np.where(their_label[mine], w[mine], -w[mine]), count)
    tails, heads = np.concatenate(tails), np.concatenate(heads)
    pair_caps = _capacities(np.concatenate(caps))
    source, sink = count, count + 1
    to_true = np.flatnonzero(balance > 0)
    to_false = np.flatnonzero(balance < 0)
    graph = csr_matrix(
        (
            np.concatenate([pair_caps, pair_caps, _capacities(balance[to_true]), _capacities(-balance[to_false])]),
            (
                np.concatenate([tails, heads, np.full(to_true.size, source), to_false]),
                np.concatenate([heads, tails, to_true, np.full(to_false.size, sink)]),
            ),
        ),
        shape=(count + 2, count + 2),
    )
    flow = maximum_flow(graph, source, sink, method="dinic").flow
    residual = graph - flow
    residual.data = (residual.data > 0).astype(np.int8)
    residual.eliminate_zeros()
    reached = breadth_first_order(residual, source, directed=True, return_predecessors=False)
    on_source_side = np.zeros(count + 2, dtype=bool)
    on_source_side[reached] = True
    result[where] = on_source_side[:count]
    return result


def _capacities(costs: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(costs * RESOLUTION), 0, _MAX_CAPACITY).astype(np.int32)
