"""Test doubles and a synthetic volume for the 3D session tests.

`BallTool` is a 3D click tool whose answer is known voxel for voxel: each click paints
(positive) or erases (negative) a ball around its voxel on top of the mask it is given (the
current mask), and a box start fills the box. It says which box it changed, or not
(``report_box``), so the session's own change detection is exercised both ways. The real 3D
tools have their own tests.

`ellipsoid_volume`: a bright ellipsoid on a noisy background, the truth, and the spacing.
"""

from __future__ import annotations

from typing import List

import numpy as np

from ibisagent.segmenters.volume_base import VolumePrediction, VolumeSegmenter


class BallTool(VolumeSegmenter):
    name = "ball"
    description = "test tool: each click paints (positive) or erases (negative) a ball"

    def __init__(self, radius: int = 2, report_box: bool = True) -> None:
        super().__init__()
        self.radius = radius
        self.report_box = report_box
        self.calls: List[tuple] = []

    def _embed(self, volume, spacing):
        return np.indices(volume.shape, sparse=True)

    def _predict(self, grid, clicks, prior_mask, prior_state, box):
        self.calls.append((tuple(clicks), prior_state, box))
        shape = self.volume_shape
        if prior_mask is None:
            mask = np.zeros(shape, bool)
            if box is not None:
                mask[box.k0:box.k1 + 1, box.j0:box.j1 + 1, box.i0:box.i1 + 1] = True
        else:
            mask = prior_mask.copy()
        done = prior_state if isinstance(prior_state, int) else 0
        kk, jj, ii = grid
        changed = None
        for click in clicks[done:]:  # earlier clicks are already in the prior mask
            ball = (kk - click.k) ** 2 + (jj - click.j) ** 2 + (ii - click.i) ** 2 <= self.radius ** 2
            mask = mask | ball if click.positive else mask & ~ball
            r = self.radius
            here = ((max(click.k - r, 0), click.k + r + 1), (max(click.j - r, 0), click.j + r + 1),
                    (max(click.i - r, 0), click.i + r + 1))
            changed = here if changed is None else tuple((min(a[0], b[0]), max(a[1], b[1])) for a, b in zip(changed, here))
        return VolumePrediction(mask, len(clicks), changed if self.report_box else None)


def ellipsoid_volume(shape=(20, 40, 48), seed: int = 0):
    """(grey uint8 [k, j, i], bool truth): a bright ellipsoid filling about half of each axis."""
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(shape)
    centre = [(s - 1) / 2.0 for s in shape]
    radii = [s * 0.3 for s in shape]
    truth = sum(((a - c) / r) ** 2 for a, c, r in zip((k, j, i), centre, radii)) <= 1.0
    grey = np.clip(rng.normal(60, 6, shape) + 120 * truth, 0, 255).astype(np.uint8)
    return grey, truth
