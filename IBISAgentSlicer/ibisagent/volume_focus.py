"""Where in a volume the agent looks next: which slice of which plane to review.

The policy is 2D (`ibisagent.policies`): it sees one slice with the mask drawn on it and proposes
one click there. In 3D someone has to choose the slice. A person reviewing a 3D segment scrolls
through it and stops where the outline jumps: a slice that disagrees with both of its neighbours
where they agree with each other (a spike the mask sticks out in, a notch or a missing slice it
skips) is where a mask made slice by slice, or a tool that leaked along one slice, is most likely
wrong. `rank_looks` orders the slices of every plane that way:

1. the slice the user is on (``hint``), when it has not been reviewed since it last changed;
2. then every slice by its *jump*: the voxels of the slice that differ from both neighbours where
   the two neighbours agree (counted in voxels, so the three planes compare directly), largest
   first. A slice the mask skips (empty between two slices that hold it) cannot be shown on
   itself, so its jump goes to a *gap* look across it: the slice of each other plane that cuts
   the most of the skipped voxels, where the skip shows as a cut through the structure;
3. slices with no jump follow by cross-section, largest first (the middle of the structure, where
   a 2D view of it says most), so a mask without jumps is still reviewed where it is largest.

Slices the mask does not cross are not looked at once the mask holds anything: the 2D policy reads
an empty slice as "start from scratch" and would begin a new object there. An empty mask is
looked at on the hinted slice, else the middle slice of the first plane.

Masks are bool [k, j, i]; planes come from an `ibisagent.volume_views.VolumeViews`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AbstractSet, List, Optional, Sequence, Tuple

import numpy as np

from .volume_views import VolumeViews

HINT = "hint"
JUMP = "jump"
GAP = "gap"
LARGEST = "largest"
START = "start"


@dataclass(frozen=True)
class Look:
    """One slice to review: ``plane``, ``index``, why (``reason``: hint, jump, largest or start)
    and the figure behind it (``voxels``: the jump, or the cross-section)."""

    plane: str
    index: int
    reason: str
    voxels: int

    @property
    def key(self) -> Tuple[str, int]:
        return self.plane, self.index

    def describe(self) -> str:
        """Why this slice, in words for the reasoning text."""
        where = f"{self.plane} slice {self.index}"
        if self.reason == HINT:
            return f"{where}, the slice you are on"
        if self.reason == JUMP:
            return f"{where}, where the mask's outline jumps between neighbouring slices ({self.voxels} voxels)"
        if self.reason == GAP:
            return f"{where}, across slices the mask skips ({self.voxels} voxels missing between its neighbours)"
        if self.reason == LARGEST:
            return f"{where}, one of the mask's largest cross-sections ({self.voxels} voxels)"
        return f"{where}, to start the mask"

    def to_dict(self) -> dict:
        return {"plane": self.plane, "index": self.index, "reason": self.reason, "voxels": self.voxels}


def odd_voxels(mask: np.ndarray, axis: int) -> np.ndarray:
    """bool, ``mask``'s shape: the voxels that differ from both neighbouring slices along array
    ``axis`` where the two neighbours agree (never on the two end slices)."""
    mask = np.asarray(mask, dtype=bool)
    moved = np.moveaxis(mask, axis, 0)
    odd = np.zeros(moved.shape, dtype=bool)
    if moved.shape[0] >= 3:
        before, here, after = moved[:-2], moved[1:-1], moved[2:]
        odd[1:-1] = (before == after) & (here != before)
    return np.moveaxis(odd, 0, axis)


def jumps(mask: np.ndarray, axis: int) -> np.ndarray:
    """Per slice along array ``axis``, the `odd_voxels` it holds (int64, one per array index)."""
    odd = np.moveaxis(odd_voxels(mask, axis), axis, 0)
    return odd.reshape(odd.shape[0], -1).sum(axis=1, dtype=np.int64)


def _per_slice(array: np.ndarray, axis: int) -> np.ndarray:
    moved = np.moveaxis(array, axis, 0)
    return moved.reshape(moved.shape[0], -1).sum(axis=1, dtype=np.int64)


def rank_looks(mask: np.ndarray, views: VolumeViews, reviewed: AbstractSet[Tuple[str, int]] = frozenset(),
               hint: Optional[Tuple[str, int]] = None, planes: Optional[Sequence[str]] = None,
               limit: Optional[int] = None) -> List[Look]:
    """The slices to review, best first (see the module docstring), leaving out ``reviewed``
    ((plane, index) pairs) and planes not in ``planes`` (default: all of ``views``)."""
    mask = np.asarray(mask, dtype=bool)
    planes = list(views.planes if planes is None else planes)
    if not planes:
        return []
    looks: List[Look] = []
    seen = set(reviewed)
    if hint is not None and hint[0] in planes and tuple(hint) not in seen:
        plane, index = hint
        area = int(views.stack(plane, mask)[index].sum())
        if area or not mask.any():
            looks.append(Look(plane, int(index), HINT, area))
            seen.add((plane, int(index)))
    if not mask.any():
        if not looks:
            plane = planes[0]
            middle = views.count(plane) // 2
            if (plane, middle) not in seen:
                looks.append(Look(plane, middle, START, 0))
        return looks[:limit] if limit else looks
    areas = {axis: _per_slice(mask, axis) for axis in {views.normal_axis(p) for p in planes}}
    best: dict = {}

    def offer(plane: str, array_index: int, reason: str, voxels: int) -> None:
        index = views.index_of(plane, array_index)
        if (plane, index) in seen:
            return
        order = (0, -voxels) if reason in (JUMP, GAP) else (1, -voxels)
        candidate = (order, planes.index(plane), index, Look(plane, index, reason, voxels))
        if (plane, index) not in best or candidate[:3] < best[(plane, index)][:3]:
            best[(plane, index)] = candidate

    for plane in planes:
        axis = views.normal_axis(plane)
        odd = odd_voxels(mask, axis)
        per_slice = _per_slice(odd, axis)
        skipped = np.flatnonzero((areas[axis] == 0) & (per_slice > 0))
        for array_index in np.flatnonzero(areas[axis]):
            jump = int(per_slice[array_index])
            offer(plane, int(array_index), JUMP if jump else LARGEST, jump or int(areas[axis][array_index]))
        if len(skipped):
            gap = np.zeros_like(odd)
            where = [slice(None)] * 3
            where[axis] = skipped
            gap[tuple(where)] = odd[tuple(where)]
            for other in planes:
                other_axis = views.normal_axis(other)
                if other_axis == axis:
                    continue
                cut = _per_slice(gap, other_axis)
                cut[areas[other_axis] == 0] = 0
                if cut.any():  # ranked by the whole skip, shown where it is cut most
                    offer(other, int(np.argmax(cut)), GAP, int(gap.sum()))
    looks.extend(item[3] for item in sorted(best.values(), key=lambda item: item[:3]))
    return looks[:limit] if limit else looks
