"""A small synthetic volume with a known target, and test doubles for the volume tests.

`blob_volume`: a bright ellipsoid on a noisy background; its cross-section grows then shrinks
from slice to slice and its centre drifts, so copying a slice's mask is measurably wrong and a
propagation that follows the image is measurably right. `DiskTool` paints or erases a disk per
click on top of the prior mask (predictable pixel for pixel) and counts its embeddings.
"""

from __future__ import annotations

from typing import List

import numpy as np

from ibisagent.actions import NEGATIVE, POSITIVE, TERMINATE, Action, format_response
from ibisagent.policies.base import Observation, Policy
from ibisagent.segmenters.base import Prediction, Segmenter


def blob_volume(slices: int = 15, rows: int = 48, cols: int = 56, seed: int = 0):
    """(grey uint8 [index, row, col], bool truth [index, row, col]); target on slices 2..12."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:rows, :cols]
    truth = np.zeros((slices, rows, cols), bool)
    centre = slices // 2
    for index in range(slices):
        half = (slices - 4) / 2.0
        scale = 1.0 - ((index - centre) / half) ** 2
        if scale <= 0:
            continue
        radius_y, radius_x = 14 * np.sqrt(scale), 18 * np.sqrt(scale)
        cy, cx = rows / 2 + 0.8 * (index - centre), cols / 2 - 0.6 * (index - centre)
        truth[index] = ((yy - cy) / radius_y) ** 2 + ((xx - cx) / radius_x) ** 2 <= 1.0
    grey = np.clip(rng.normal(50, 8, truth.shape) + 140 * truth, 0, 255).astype(np.uint8)
    return grey, truth


def rgb(grey: np.ndarray) -> List[np.ndarray]:
    return [np.repeat(g[:, :, None], 3, axis=2) for g in grey]


class DiskTool(Segmenter):
    name = "disk"
    description = "test tool: each click paints (positive) or erases (negative) a disk"

    def __init__(self, radius: int = 3) -> None:
        super().__init__()
        self.radius = radius
        self.embed_calls = 0
        self.calls: List[tuple] = []

    def _embed(self, image):
        self.embed_calls += 1
        return np.mgrid[: image.shape[0], : image.shape[1]]

    def _predict(self, grid, clicks, prior_mask, prior_state):
        self.calls.append((tuple(clicks), None if prior_mask is None else prior_mask.copy()))
        yy, xx = grid
        mask = np.zeros(yy.shape, bool) if prior_mask is None else prior_mask.copy()
        for click in clicks:
            disk = (yy - click.y) ** 2 + (xx - click.x) ** 2 <= self.radius ** 2
            mask = mask | disk if click.positive else mask & ~disk
        return Prediction(mask, None, 1.0)


class ScriptedPolicy(Policy):
    """Answers with the given texts in order (the last one repeats); records what it saw."""

    name = "scripted"
    description = "test policy with fixed answers"

    def __init__(self, texts):
        self.texts = list(texts)
        self.seen: List[Observation] = []

    def respond(self, observation):
        self.seen.append(observation)
        return self.texts[min(len(self.seen) - 1, len(self.texts) - 1)]


def point(x: float, y: float, positive: bool = True) -> str:
    return format_response("scripted", Action(POSITIVE if positive else NEGATIVE, x, y))


def terminate(answer: str = "done") -> str:
    return format_response("scripted", Action(TERMINATE), answer)
