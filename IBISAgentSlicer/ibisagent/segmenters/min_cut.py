"""The minimum cut of a binary labelling on a pixel grid, with scipy's maximum flow.

The energy is the usual one of interactive graph-cut segmentation: every free pixel pays a
*unary* cost for the label it takes, and every pair of 8-neighbours with different labels pays
their *pairwise* weight. Pixels outside the free set keep a fixed label; a free pixel next to a
fixed one pays that pair's weight when it disagrees with it, which is folded into its unary.

scipy's `maximum_flow` (Dinic's algorithm, BSD licensed, already a core dependency) takes integer
capacities, so costs are scaled by `RESOLUTION` and rounded: ties closer than 1/RESOLUTION may
break either way, far below anything an image can tell apart.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import breadth_first_order, maximum_flow

#: Integer capacity units per unit of cost.
RESOLUTION = 64.0
#: Capacities are int32 in scipy; larger costs are clipped (they mean "never").
_MAX_CAPACITY = 2 ** 30

#: The four offsets (rows, cols) that visit each 8-neighbour pair once.
NEIGHBOUR_OFFSETS: Tuple[Tuple[int, int], ...] = ((0, 1), (1, 0), (1, 1), (1, -1))


def pair_slices(shape: Tuple[int, int], offset: Tuple[int, int]) -> Tuple[tuple, tuple]:
    """(slices of p, slices of q) selecting every pair q = p + offset inside an array of ``shape``."""
    dy, dx = offset
    rows, cols = shape
    p_cols = slice(0, cols - dx) if dx >= 0 else slice(-dx, cols)
    q_cols = slice(dx, cols) if dx >= 0 else slice(0, cols + dx)
    return (slice(0, rows - dy), p_cols), (slice(dy, rows), q_cols)


def label(
    free: np.ndarray, fixed: np.ndarray, unary: np.ndarray, weights: Tuple[np.ndarray, ...]
) -> np.ndarray:
    """The labelling of (nearly) least energy, bool (H, W).

    ``free``: bool (H, W), pixels whose label is decided here. ``fixed``: bool (H, W), the label
    every other pixel keeps. ``unary``: float (H, W), for a free pixel the cost of label False
    minus the cost of label True (positive favours True). ``weights``: one float (H, W) array per
    offset of `NEIGHBOUR_OFFSETS`, the weight of the pair (p, p + offset) stored at p.

    Up to `EXACT_LIMIT` free pixels the cut is exact. A larger problem is solved coarse to fine,
    as a banded graph cut: the same energy on 2 x 2 blocks first (recursively), then exactly
    again at full resolution in a band of `BAND` pixels around the coarse boundary. Max-flow time
    grows faster than the pixel count, and a boundary rarely moves more than a block when the
    detail comes back.
    """
    if np.count_nonzero(free) <= EXACT_LIMIT or min(free.shape) < 8:
        return _exact(free, fixed, unary, weights)
    coarse = label(*_coarsened(free, fixed, unary, weights))
    guess = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)[: free.shape[0], : free.shape[1]]
    guess = np.where(free, guess, fixed)
    changes = np.zeros(free.shape, dtype=bool)
    for offset in NEIGHBOUR_OFFSETS:
        p, q = pair_slices(free.shape, offset)
        differ = guess[p] != guess[q]
        changes[p] |= differ
        changes[q] |= differ
    band = ndimage.binary_dilation(changes, iterations=BAND) & free
    return _exact(band, guess, unary, weights)


#: Free pixels up to which the cut is solved exactly in one go.
EXACT_LIMIT = 20000
#: Half-width in pixels of the full-resolution band around a coarse boundary.
BAND = 2


def _coarsened(free, fixed, unary, weights):
    """The same problem on 2 x 2 blocks: a block is free when any of its pixels is; its unary
    sums its free pixels' and, for its fixed pixels, a pull stronger than any free pixel's
    towards their label; block pairs weigh the sum of the pixel pairs between them."""
    rows, cols = free.shape
    half = ((rows + 1) // 2, (cols + 1) // 2)
    padding = ((0, 2 * half[0] - rows), (0, 2 * half[1] - cols))

    def blocks(values: np.ndarray) -> np.ndarray:
        return np.pad(values, padding).reshape(half[0], 2, half[1], 2).sum(axis=(1, 3))

    strong = 2.0 * max(float(np.abs(unary[free]).max()), 1.0)
    pull = np.where(free, unary, np.where(fixed, strong, -strong))
    coarse_free = blocks(free.astype(np.int32)) > 0
    coarse_fixed = blocks((fixed & ~free).astype(np.int32)) >= blocks((~fixed & ~free).astype(np.int32))
    coarse_weights = _coarse_weights(weights, half)
    return coarse_free, coarse_fixed, blocks(pull), coarse_weights


def _coarse_weights(weights, half) -> Tuple[np.ndarray, ...]:
    """Block-pair weights: each pixel pair that straddles two blocks adds its weight to that
    block pair. Which block pair a pixel pair joins depends only on the parities of its first
    pixel, so every case is one strided slice."""
    shape = (2 * half[0], 2 * half[1])
    across, down, diagonal, anti = (
        np.pad(w, ((0, shape[0] - w.shape[0]), (0, shape[1] - w.shape[1]))).astype(np.float64) for w in weights
    )
    right = across[0::2, 1::2] + across[1::2, 1::2] + diagonal[0::2, 1::2]
    right[:, :-1] += anti[0::2, 0::2][:, 1:]  # from (even, even) one row down-left: the block to the left
    below = down[1::2, 0::2] + down[1::2, 1::2] + diagonal[1::2, 0::2] + anti[1::2, 1::2]
    return right, below, diagonal[1::2, 1::2].copy(), anti[1::2, 0::2].copy()


def _exact(free, fixed, unary, weights) -> np.ndarray:
    """The exact minimum cut (see `label`) on the 8-neighbour pixel graph."""
    shape = free.shape
    return exact_cut(free, fixed, unary, [(*pair_slices(shape, offset), weight)
                                          for offset, weight in zip(NEIGHBOUR_OFFSETS, weights)])


def exact_cut(free: np.ndarray, fixed: np.ndarray, unary: np.ndarray, pairs) -> np.ndarray:
    """The exact minimum cut over the ``free`` elements of an array of any dimension (2D pixels
    here, 3D voxels in `volume_min_cut`). ``fixed``: the labels of the others, bool, same shape;
    ``unary``: the cost of False minus the cost of True per element; ``pairs``: (p_slices,
    q_slices, weight) per neighbour direction, weight the cost of p and q disagreeing, indexed
    as p. Returns ``fixed`` with the free elements labelled."""
    result = fixed.copy()
    where = np.nonzero(free)
    count = where[0].size
    if count == 0:
        return result
    index = np.full(free.shape, -1, dtype=np.int64)
    index[where] = np.arange(count)
    balance = unary[where].astype(np.float64)
    tails, heads, caps = [], [], []
    for p_sl, q_sl, weight in pairs:
        p_free, q_free, w = free[p_sl], free[q_sl], weight[p_sl]
        both = p_free & q_free
        tails.append(index[p_sl][both])
        heads.append(index[q_sl][both])
        caps.append(w[both])
        # A free element beside a fixed one: disagreeing with it costs the pair's weight.
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
