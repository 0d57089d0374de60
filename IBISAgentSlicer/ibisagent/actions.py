"""The IBISAgent output grammar: parse model text into one action, and write it back.

A model step is text of the form::

    <think>
    ...free reasoning...
    </think>
    <action>
    Positive Point (0.1234, 0.5678)
    </action>

followed, after a terminate action, by an optional ``<answer>...</answer>``. The actions are
``Positive Point (x, y)``, ``Negative Point (x, y)`` and ``Terminate`` (the reference RL code
spells it ``Termination``; both are accepted). ``x`` is the column and ``y`` the row, both
normalised to [0, 1] relative to the image shown to the model.

`parse_response` never raises: any string gives a `ParsedResponse`, and an invalid one carries a
one-sentence ``error`` that says what is wrong, so the episode can stop with that reason.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional, Tuple

POSITIVE = "positive"
NEGATIVE = "negative"
TERMINATE = "terminate"

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)
_ACTION = re.compile(r"<action>(.*?)</action>", re.DOTALL | re.IGNORECASE)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_NUMBER = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
_POINT = re.compile(
    r"^(positive|negative)\s+point\s*\(\s*" + _NUMBER + r"\s*,\s*" + _NUMBER + r"\s*\)$",
    re.IGNORECASE,
)
# Points a little outside [0, 1] are kept and clamped onto the image edge (and reported as
# clamped); points farther out mean the model is not using normalised coordinates at all.
CLAMP_TOLERANCE = 0.05
_TERMINATE = re.compile(r"^(terminate|termination)\.?$", re.IGNORECASE)


@dataclass(frozen=True)
class Action:
    """One decision of the agent.

    ``kind`` is ``"positive"``, ``"negative"`` or ``"terminate"``. For point actions ``x``
    (column) and ``y`` (row) are normalised to [0, 1] of the image the model saw; for
    terminate both are None.
    """

    kind: str
    x: Optional[float] = None
    y: Optional[float] = None

    @property
    def is_point(self) -> bool:
        return self.kind in (POSITIVE, NEGATIVE)

    def to_text(self) -> str:
        """The action line exactly as the model writes it (four decimals)."""
        if self.kind == TERMINATE:
            return "Terminate"
        word = "Positive" if self.kind == POSITIVE else "Negative"
        return f"{word} Point ({self.x:.4f}, {self.y:.4f})"

    def to_pixel(self, width: int, height: int) -> Tuple[int, int, bool]:
        """Map to a pixel (column, row) of a ``width`` x ``height`` image.

        Pixel = floor(x * W), floor(y * H), clamped into the image. The third value says
        whether clamping moved the point, so callers can report it.
        """
        if not self.is_point:
            raise ValueError("A terminate action has no pixel.")
        col = math.floor(self.x * width)
        row = math.floor(self.y * height)
        clamped_col = min(max(col, 0), width - 1)
        clamped_row = min(max(row, 0), height - 1)
        return clamped_col, clamped_row, (clamped_col, clamped_row) != (col, row)


@dataclass(frozen=True)
class ParsedResponse:
    """What one model response says. ``action`` is None exactly when ``error`` is set."""

    raw: str
    reasoning: str
    action: Optional[Action]
    answer: Optional[str]
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None


def parse_response(text: object) -> ParsedResponse:
    """Parse one model response. Never raises; an invalid response has ``error`` set."""
    if not isinstance(text, str):
        return ParsedResponse(repr(text), "", None, None, "The model returned no text.")
    think = _THINK.search(text)
    reasoning = think.group(1).strip() if think else ""
    answer_match = _ANSWER.search(text)
    answer = answer_match.group(1).strip() if answer_match else None
    blocks = _ACTION.findall(text)
    if not blocks:
        return ParsedResponse(text, reasoning, None, answer, "The response has no <action>...</action> block.")
    if len(blocks) > 1:
        return ParsedResponse(
            text, reasoning, None, answer, f"The response has {len(blocks)} action blocks; exactly one is allowed."
        )
    body = " ".join(blocks[0].split())
    action, error = _parse_action_line(body)
    return ParsedResponse(text, reasoning, action, answer, error)


def _parse_action_line(body: str) -> Tuple[Optional[Action], Optional[str]]:
    if _TERMINATE.match(body):
        return Action(TERMINATE), None
    point = _POINT.match(body)
    if not point:
        shown = body if len(body) <= 80 else body[:77] + "..."
        return None, (
            f"The action {shown!r} is not 'Positive Point (x, y)', 'Negative Point (x, y)' or 'Terminate'."
        )
    x, y = float(point.group(2)), float(point.group(3))
    if not (math.isfinite(x) and math.isfinite(y)):
        return None, "The click coordinates are not finite numbers."
    if not (-CLAMP_TOLERANCE <= x <= 1.0 + CLAMP_TOLERANCE and -CLAMP_TOLERANCE <= y <= 1.0 + CLAMP_TOLERANCE):
        return None, f"The click ({x}, {y}) is outside the normalised range [0, 1]."
    kind = POSITIVE if point.group(1).lower() == "positive" else NEGATIVE
    return Action(kind, x, y), None


def format_response(reasoning: str, action: Action, answer: Optional[str] = None) -> str:
    """Write a response in the model's grammar (used by the weight-free and simulated policies)."""
    text = f"<think>\n{reasoning.strip()}\n</think>\n<action>\n{action.to_text()}\n</action>"
    if answer is not None and action.kind == TERMINATE:
        text += f"\n<answer>\n{answer.strip()}\n</answer>"
    return text
