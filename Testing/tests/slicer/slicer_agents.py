"""Small policies and tools for the logic tests (real engine classes, scripted behaviour)."""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from ibisagent.actions import NEGATIVE, POSITIVE, TERMINATE, Action, format_response
from ibisagent.policies.base import Observation, Policy
from ibisagent.policies.simulated import SimulatedPolicy
from ibisagent.segmenters.base import Prediction, Segmenter


class ScriptedPolicy(Policy):
    """Answers with the given raw texts in order, then terminates. Records what it saw."""

    name = "scripted"

    def __init__(self, texts: List[str]) -> None:
        self.texts = list(texts)
        self.seen: List[Observation] = []

    def respond(self, observation: Observation) -> str:
        self.seen.append(observation)
        if self.texts:
            return self.texts.pop(0)
        return format_response("done", Action(TERMINATE), "finished")


def point(x: float, y: float, positive: bool = True, why: str = "scripted") -> str:
    return format_response(why, Action(POSITIVE if positive else NEGATIVE, x, y))


class SwitchPolicy(Policy):
    """Delegates to ``inner``, which tests set after building the server."""

    name = "switch"

    def __init__(self) -> None:
        self.inner: Optional[Policy] = None

    def respond(self, observation: Observation) -> str:
        return self.inner.respond(observation)


class DiskSegmenter(Segmenter):
    """A predictable tool: the union of 2-pixel-radius disks around positive clicks, minus
    disks around negative clicks, added to the prior mask. Fails on demand."""

    name = "disk"

    def __init__(self) -> None:
        super().__init__()
        self.fail_on_call: Optional[int] = None
        self.calls = 0

    def _embed(self, image: np.ndarray) -> object:
        return image.shape[:2]

    def _predict(self, image_state, clicks, prior_mask, prior_state) -> Prediction:
        self.calls += 1
        if self.fail_on_call is not None and self.calls >= self.fail_on_call:
            raise RuntimeError("the segmentation tool crashed (test)")
        rows, cols = image_state
        r, c = np.mgrid[0:rows, 0:cols]
        mask = np.zeros((rows, cols), bool) if prior_mask is None else prior_mask.copy()
        for click in clicks:
            disk = (r - click.y) ** 2 + (c - click.x) ** 2 <= 4
            mask = mask | disk if click.positive else mask & ~disk
        return Prediction(mask, None, 1.0)


__all__ = ["ScriptedPolicy", "SwitchPolicy", "DiskSegmenter", "SimulatedPolicy", "point"]
