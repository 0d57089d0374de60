"""Clicks: the prompts a segmentation tool receives, with where each one came from.

All clicks live in pixel coordinates of the original 2D image: ``x`` is the column and ``y`` the
row, zero-based, so ``mask[y, x]`` is the clicked pixel. ``positive`` is True for "this is
target" (label 1 for SAM-family tools) and False for "this is not target" (label 0).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, List, Sequence, Tuple

import numpy as np

AGENT = "agent"  # proposed by the policy and accepted unchanged
USER = "user"  # placed by the user
USER_MOVED = "user-moved"  # proposed by the policy, then moved or flipped by the user
ORIGINS = (AGENT, USER, USER_MOVED)


class Labelled:
    """What every click record shares, wherever it places the click (this module's `Click`, the
    3D tools' `ibisagent.segmenters.volume_base.VoxelClick`, a 3D session's
    `ibisagent.volume_records.VolumeClick`): its ``positive`` and ``origin`` fields, the origin
    checked when it is made, the SAM label and flipping. A mixin for frozen dataclasses that
    declare those two fields last (a dataclass base would put them before the place's fields and
    change every record's positional order)."""

    __slots__ = ()

    def __post_init__(self) -> None:
        if self.origin not in ORIGINS:
            raise ValueError(f"Click origin must be one of {ORIGINS}, not {self.origin!r}.")

    @property
    def label(self) -> int:
        """SAM label: 1 for a positive click, 0 for a negative one."""
        return 1 if self.positive else 0

    def flipped(self):
        """The same place with the other label; an agent's click becomes the user's (moved)."""
        return replace(self, positive=not self.positive, origin=USER_MOVED if self.origin == AGENT else self.origin)


@dataclass(frozen=True)
class Click(Labelled):
    x: int
    y: int
    positive: bool
    origin: str = AGENT

    def to_dict(self) -> dict:
        return {"x": self.x, "y": self.y, "positive": self.positive, "origin": self.origin}

    @classmethod
    def from_dict(cls, data: dict) -> "Click":
        return cls(int(data["x"]), int(data["y"]), bool(data["positive"]), str(data.get("origin", USER)))


def check_inside(clicks: Iterable[Click], shape: Tuple[int, int]) -> None:
    """Raise ValueError naming the first click outside an image of ``shape`` (rows, cols)."""
    rows, cols = shape
    for click in clicks:
        if not (0 <= click.x < cols and 0 <= click.y < rows):
            raise ValueError(
                f"Click at (x={click.x}, y={click.y}) is outside the {cols}x{rows} image."
            )


def as_arrays(clicks: Sequence[Click]) -> Tuple[np.ndarray, np.ndarray]:
    """Points as float32 (N, 2) in (x, y) pixel order and labels as int32 (N,), SAM style."""
    points = np.array([[c.x, c.y] for c in clicks], dtype=np.float32).reshape(-1, 2)
    labels = np.array([c.label for c in clicks], dtype=np.int32)
    return points, labels


def clicks_to_list(clicks: Sequence[Click]) -> List[dict]:
    return [c.to_dict() for c in clicks]
