"""Test doubles for the engine tests.

`DiskTool` is a deliberately simple segmentation tool with an exactly predictable answer (each
click paints or erases a disk on top of the prior mask), so the episode's bookkeeping can be
checked pixel for pixel. The real tools have their own tests. `ScriptedPolicy` replays texts.
"""

from __future__ import annotations

from typing import List

import numpy as np

from ibisagent.policies.base import Observation, Policy
from ibisagent.segmenters.base import Prediction, Segmenter


class DiskTool(Segmenter):
    name = "disk"
    description = "test tool: each click paints (positive) or erases (negative) a disk"

    def __init__(self, radius: int = 4) -> None:
        super().__init__()
        self.radius = radius
        self.embed_calls = 0
        self.calls: List[tuple] = []

    def _embed(self, image):
        self.embed_calls += 1
        return np.mgrid[: image.shape[0], : image.shape[1]]

    def _predict(self, grid, clicks, prior_mask, prior_state):
        self.calls.append((tuple(clicks), None if prior_state is None else prior_state.copy()))
        yy, xx = grid
        mask = np.zeros(yy.shape, bool) if prior_mask is None else prior_mask.copy()
        for click in clicks:
            disk = (yy - click.y) ** 2 + (xx - click.x) ** 2 <= self.radius ** 2
            mask = mask | disk if click.positive else mask & ~disk
        return Prediction(mask, np.array([len(clicks)], dtype=np.float32), 0.5)


class ScriptedPolicy(Policy):
    """Answers with the given texts in order (the last one repeats)."""

    name = "scripted"
    description = "test policy with fixed answers"

    def __init__(self, texts):
        self.texts = list(texts)
        self.seen: List[Observation] = []

    def respond(self, observation):
        self.seen.append(observation)
        return self.texts[min(len(self.seen) - 1, len(self.texts) - 1)]
