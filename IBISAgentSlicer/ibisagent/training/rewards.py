"""The five step-level rewards IBISAgent's GRPO stage used, one function per term, and the total.

Definitions (those of the reference's ``verl/utils/reward_score/med_seg.py``):

- **format** (1 or 0): the response is laid out as ``<think>\\n...\\n</think>\\n<action>\\n...\\n</action>``
  (line breaks where shown), the action line is ``Positive Point (x, y)`` / ``Negative Point
  (x, y)`` with x, y in [0, 1], or ``Terminate``; and the answer block is well formed: an
  ``<answer>`` is closed after it opens, and a Terminate carries one. The reference's regex
  spells the action ``Termination`` while its prompt says ``Terminate``; both are accepted.
- **answer** (0 to 3): IoU of the mask after the step against the reference mask:
  > 0.8: 3, > 0.7: 2, > 0.5: 1, else 0. After Terminate, the current mask counts.
- **placement** (+1 / -1, 0 for no point): a positive point inside the missed target
  (reference & ~current mask), or a negative point inside the wrongly included area
  (~reference & current mask), earns +1; any other point -1. Terminate and unreadable text: 0.
- **progress** (1 or 0): a point raised the IoU above the IoU before the step (``pre_iou``).
- **length** (+1 or a penalty): +1 while the step number is at most ``optimal_step`` (5), then
  -0.2 per step beyond it; 0 when the step number is unknown.

The total is the mean of the five. Unreadable text earns 0 in every term but length, as in the
reference. Reading is strict (the exact layout the model was trained to write), unlike the
tolerant parser used at run time (`ibisagent.actions`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Optional

import numpy as np

from ..actions import NEGATIVE, POSITIVE, TERMINATE, Action
from ..metrics import iou

OPTIMAL_STEP = 5
LENGTH_PENALTY = 0.2
ANSWER_TIERS = ((0.8, 3.0), (0.7, 2.0), (0.5, 1.0))

_UNIT = r"(?:0(?:\.\d+)?|1(?:\.0+)?)"
_LAYOUT = re.compile(r"<think>\n(.*?)\n</think>\n\s*<action>\n(.*?)\n</action>", re.DOTALL)
_ACTION_BLOCK = re.compile(r"<action>\n(.*?)\n</action>", re.DOTALL)
_POINT = re.compile(r"(Positive|Negative) Point \(\s*(" + _UNIT + r")\s*,\s*(" + _UNIT + r")\s*\)")
_TERMINATE = re.compile(r"Terminate|Termination")


def read_action(text: str) -> Optional[Action]:
    """The action of ``text`` as the reward reads it: the first ``<action>`` block, alone on its
    lines, holding exactly a point in [0, 1] or Terminate/Termination; None otherwise."""
    if not isinstance(text, str):
        return None
    block = _ACTION_BLOCK.search(text)
    if block is None:
        return None
    line = block.group(1).strip()
    if _TERMINATE.fullmatch(line):
        return Action(TERMINATE)
    point = _POINT.fullmatch(line)
    if point is None:
        return None
    return Action(POSITIVE if point.group(1) == "Positive" else NEGATIVE, float(point.group(2)), float(point.group(3)))


def format_reward(text: str) -> float:
    if not isinstance(text, str) or _LAYOUT.search(text) is None:
        return 0.0
    action = read_action(text)
    if action is None:
        return 0.0
    if "<answer>" in text:
        closed = "</answer>" in text and text.index("<answer>") < text.index("</answer>")
        return 1.0 if closed else 0.0
    return 0.0 if action.kind == TERMINATE else 1.0


def answer_reward(step_iou: float) -> float:
    for threshold, score in ANSWER_TIERS:
        if step_iou > threshold:
            return score
    return 0.0


def placement_reward(action: Optional[Action], current_mask: np.ndarray, truth: np.ndarray) -> float:
    if action is None or not action.is_point:
        return 0.0
    rows, cols = truth.shape
    x, y, _ = action.to_pixel(cols, rows)
    if action.kind == POSITIVE:
        return 1.0 if truth[y, x] and not current_mask[y, x] else -1.0
    return 1.0 if current_mask[y, x] and not truth[y, x] else -1.0


def progress_reward(action: Optional[Action], step_iou: float, pre_iou: float) -> float:
    return 1.0 if action is not None and action.is_point and step_iou > pre_iou else 0.0


def length_reward(current_step: Optional[int], optimal_step: int = OPTIMAL_STEP) -> float:
    if current_step is None:
        return 0.0
    if current_step <= optimal_step:
        return 1.0
    return -LENGTH_PENALTY * (current_step - optimal_step)


@dataclass(frozen=True)
class RewardTerms:
    """The five terms of one response; ``score`` is their mean. ``step_iou`` is the IoU the
    answer term was computed from (0 for unreadable text)."""

    format: float
    answer: float
    placement: float
    progress: float
    length: float
    step_iou: float

    @property
    def score(self) -> float:
        return (self.format + self.answer + self.placement + self.progress + self.length) / 5.0

    def to_dict(self) -> Dict[str, float]:
        """``score`` first (what verl optimises), then every term (logged by verl)."""
        return dict({"score": self.score}, **asdict(self))


def score_response(text: str, current_mask: np.ndarray, truth: np.ndarray,
                   mask_after: Callable[[Action], np.ndarray], pre_iou: float,
                   current_step: Optional[int], optimal_step: int = OPTIMAL_STEP) -> RewardTerms:
    """All five terms for ``text`` answering an observation whose mask is ``current_mask``.

    ``mask_after(action)`` returns the mask the segmentation tool gives once a point action is
    added to the earlier clicks (called only for points). ``truth``: the reference mask.
    """
    current_mask = np.asarray(current_mask, bool)
    truth = np.asarray(truth, bool)
    length = length_reward(current_step, optimal_step)
    action = read_action(text)
    if action is None:
        return RewardTerms(0.0, 0.0, 0.0, 0.0, length, 0.0)
    result = current_mask if action.kind == TERMINATE else np.asarray(mask_after(action), bool)
    step_iou = iou(result, truth)
    return RewardTerms(format_reward(text), answer_reward(step_iou), placement_reward(action, current_mask, truth),
                       progress_reward(action, step_iou, pre_iou), length, step_iou)
