"""Bit-exact undo for the worked slice: one snapshot of the slice's mask per applied step.

A snapshot holds the bool (rows, cols) mask of the worked slice (display order) as it was
*before* a step was written, plus the click-history length at that time, so undoing restores
the segment and its history exactly. Snapshots are copies; later edits cannot change them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np


@dataclass(frozen=True)
class SliceSnapshot:
    """The worked slice before one step: ``mask`` bool (rows, cols), ``history_length`` steps."""

    mask: np.ndarray
    history_length: int
    label: str = ""


class SliceUndoStack:
    """Last-in, first-out snapshots of one slice; `limit` caps memory (oldest dropped first)."""

    def __init__(self, limit: int = 100) -> None:
        if limit < 1:
            raise ValueError(f"The undo limit must be at least 1; got {limit}.")
        self.limit = limit
        self._items: List[SliceSnapshot] = []

    def push(self, mask: np.ndarray, history_length: int, label: str = "") -> None:
        """Remember ``mask`` (copied) as the state before the step called ``label``."""
        snapshot = SliceSnapshot(np.array(mask, dtype=bool, copy=True), int(history_length), label)
        snapshot.mask.setflags(write=False)
        self._items.append(snapshot)
        if len(self._items) > self.limit:
            del self._items[0]

    def pop(self) -> Optional[SliceSnapshot]:
        """The most recent snapshot, removed from the stack; None when there is nothing to undo."""
        return self._items.pop() if self._items else None

    def peek(self) -> Optional[SliceSnapshot]:
        return self._items[-1] if self._items else None

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def can_undo(self) -> bool:
        return bool(self._items)
