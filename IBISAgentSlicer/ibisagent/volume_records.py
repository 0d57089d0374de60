"""The records of a 3D session (`ibisagent.volume_session`): a click on a slice and the voxel it
names, a proposal on one slice of the volume, an applied step with the box it changed.

Standard library + numpy (JSON-ready with ``to_dict``), as `ibisagent.session`'s records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .clicks import AGENT, Click, Labelled
from .segmenters.volume_base import VoxelClick
from .session import Proposal, Step

#: A box of voxels: ((k0, k1), (j0, j1), (i0, i1)), ends exclusive.
Box = Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]


@dataclass(frozen=True)
class VolumeClick(Labelled):
    """A click on pixel (``x`` = column, ``y`` = row) of slice ``index`` of ``plane``, and the
    voxel (``k``, ``j``, ``i``) it names. ``positive``: "this is target". The voxel part is the
    tool's `VoxelClick` (``voxel_click``); its dict form is that click's, after the slice's keys."""

    plane: str
    index: int
    x: int
    y: int
    k: int
    j: int
    i: int
    positive: bool
    origin: str = AGENT

    @property
    def voxel_click(self) -> VoxelClick:
        """What the 3D tool gets."""
        return VoxelClick(self.k, self.j, self.i, self.positive, self.origin)

    @property
    def voxel(self) -> Tuple[int, int, int]:
        return self.k, self.j, self.i

    @property
    def click(self) -> Click:
        """The same click as a 2D click on its slice."""
        return Click(self.x, self.y, self.positive, self.origin)

    def to_dict(self) -> dict:
        return {"plane": self.plane, "index": self.index, "x": self.x, "y": self.y, **self.voxel_click.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "VolumeClick":
        voxel = VoxelClick.from_dict(data)
        return cls(str(data["plane"]), int(data["index"]), int(data["x"]), int(data["y"]), *voxel.voxel,
                   voxel.positive, voxel.origin)


@dataclass
class VolumeProposal(Proposal):
    """A `Proposal` on one slice of the volume: ``plane`` and ``index`` of the slice the policy
    was shown (the last one looked at), ``voxel``: the proposed click as a `VolumeClick` (None
    for terminate and unreadable output), ``looked``: every slice looked at for this proposal,
    in order, each with why and what the policy said there."""

    plane: str = ""
    index: int = 0
    voxel: Optional[VolumeClick] = None
    looked: List[Dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        data = super().to_dict()
        data.update(plane=self.plane, index=self.index, voxel=self.voxel.to_dict() if self.voxel else None,
                    looked=list(self.looked))
        return data


@dataclass
class VolumeStep(Step):
    """A `Step` of a 3D session: ``clicks`` are `VolumeClick` s, ``mask_pixels`` counts the
    mask's voxels, ``score`` is NaN (None in `to_dict`: 3D tools give none); ``added``/``removed``:
    voxels the step changed; ``changed``: their bounding box ((k0, k1), (j0, j1), (i0, i1), ends
    exclusive; None when nothing changed)."""

    added: int = 0
    removed: int = 0
    changed: Optional[Box] = None

    def to_dict(self) -> Dict[str, Any]:
        data = super().to_dict()
        data.update(score=None if self.score != self.score else self.score, added=self.added, removed=self.removed,
                    changed=[list(pair) for pair in self.changed] if self.changed else None)
        return data
