"""The simulated annotator as a policy: it knows the ground truth and clicks in the middle of
the largest error (see `ibisagent.annotator`). Used for evaluation, never for real work.

It stops only when it has nothing to click: the mask equals the ground truth (or, with
``stop_iou``, the IoU reaches it). When every wrong pixel left has been clicked already (a tool
that does not honour a click), it clicks the largest error again rather than stop early.

It answers in the model's grammar. Its normalised coordinates are pixel centres, (col + 0.5) / W,
written with four decimals, so they map back to the intended pixel for images up to 10,000
pixels wide.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..actions import NEGATIVE, POSITIVE, TERMINATE, Action, format_response
from ..annotator import next_click
from ..imaging import check_mask
from ..metrics import iou
from .base import Observation, Policy


class SimulatedPolicy(Policy):
    name = "simulated"
    description = "simulated annotator (uses the ground-truth mask; for evaluation only)"

    def __init__(self, truth: np.ndarray, stop_iou: Optional[float] = None) -> None:
        self.truth = np.asarray(truth, dtype=bool)
        if not self.truth.any():
            raise ValueError("The ground-truth mask is empty; the simulated annotator needs a target.")
        self.stop_iou = stop_iou

    def respond(self, observation: Observation) -> str:
        truth = check_mask(self.truth, observation.mask.shape, "ground-truth mask")
        score = iou(observation.mask, truth)
        if self.stop_iou is not None and score >= self.stop_iou:
            return format_response(f"IoU {score:.3f} reaches {self.stop_iou:.2f}.", Action(TERMINATE), "done")
        clicked = [(c.x, c.y) for c in observation.clicks]
        click = next_click(truth, observation.mask, clicked)
        if click is None and score < 1.0:
            # Every wrong pixel left was clicked before and the tool did not fix it; the standard
            # protocol keeps clicking its budget, so the largest error is clicked again.
            click = next_click(truth, observation.mask)
        if click is None:
            return format_response("The mask equals the ground truth.", Action(TERMINATE), "done")
        x, y, positive = click
        rows, cols = truth.shape
        action = Action(POSITIVE if positive else NEGATIVE, round((x + 0.5) / cols, 4), round((y + 0.5) / rows, 4))
        where = "missed target" if positive else "wrongly included area"
        return format_response(f"The largest {where} is centred at pixel ({x}, {y}); IoU {score:.3f}.", action)


def build(truth: np.ndarray, stop_iou: Optional[float] = None) -> SimulatedPolicy:
    return SimulatedPolicy(truth, stop_iou)
