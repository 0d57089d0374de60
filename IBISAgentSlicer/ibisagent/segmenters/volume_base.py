"""The interface of a 3D click tool: a volume, voxel clicks on any slice of any view, a 3D mask.

The 2D interface (`ibisagent.segmenters.base.Segmenter`) stays as it is; a 3D tool is used the
same way, in two phases: `VolumeSegmenter.set_volume` once per volume (everything that depends
only on the image: smoothing, gradients, an embedding), then `VolumeSegmenter.predict` once per
click with *all* clicks so far, so a result depends only on the volume, the start and the
clicks and undo is exact.

Frames and units:

- Volumes and masks are numpy arrays in the file's own voxel order, [k, j, i] (SimpleITK's
  ``GetArrayFromImage`` order, Slicer's ``arrayFromVolume`` order). ``spacing`` is (sk, sj, si)
  in millimetres, the same order.
- A `VoxelClick` names one voxel (k, j, i) of that array, whatever view it was placed in.
- A start is the user's 3D mask (``prior_mask``, bool [k, j, i]) or a `BoxPrompt` (the CVPR
  2025 challenge's start: the target's slice range plus its 2D box on one slice), or nothing.
- ``prior_state`` is whatever the tool returned as `VolumePrediction.state` last time (None on
  the first call); a tool keeps its anchor there (the user's start, the box), never in itself,
  so one built tool can serve several sessions.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from ..clicks import AGENT, Labelled
from .base import answer_as_bool, prior_as_bool

#: The smallest volume side a 3D tool accepts (as the 2D tools' MIN_SIDE).
MIN_VOLUME_SIDE = 4


@dataclass(frozen=True)
class VoxelClick(Labelled):
    """A click on voxel (k, j, i) of the volume array. ``positive``: "this is target"."""

    k: int
    j: int
    i: int
    positive: bool
    origin: str = AGENT

    @property
    def voxel(self) -> Tuple[int, int, int]:
        return (self.k, self.j, self.i)

    def to_dict(self) -> dict:
        return {"k": self.k, "j": self.j, "i": self.i, "positive": self.positive, "origin": self.origin}

    @classmethod
    def from_dict(cls, data: dict) -> "VoxelClick":
        return cls(int(data["k"]), int(data["j"]), int(data["i"]), bool(data["positive"]), str(data.get("origin", "user")))


@dataclass(frozen=True)
class BoxPrompt:
    """A 3D box as the CVPR 2025 challenge gives it: the target lies in slices ``k0..k1`` (along
    the array's first axis, inclusive), and on slice ``k_mid`` inside rows ``j0..j1`` and
    columns ``i0..i1`` (inclusive)."""

    k0: int
    k1: int
    k_mid: int
    j0: int
    j1: int
    i0: int
    i1: int

    def to_dict(self) -> dict:
        return {name: int(getattr(self, name)) for name in ("k0", "k1", "k_mid", "j0", "j1", "i0", "i1")}


@dataclass
class VolumePrediction:
    """A 3D tool's answer: ``mask`` bool [k, j, i] on the volume's grid, ``state`` to pass back
    as ``prior_state`` next time, and ``changed``: the box ((k0, k1), (j0, j1), (i0, i1)), ends
    exclusive, outside which ``mask`` equals the prior mask (None: anywhere)."""

    mask: np.ndarray
    state: object
    changed: Optional[Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]] = None


def check_voxels(clicks: Sequence[VoxelClick], shape: Tuple[int, int, int]) -> None:
    """Raise ValueError naming the first click outside a volume of ``shape`` [k, j, i]."""
    for click in clicks:
        if not all(0 <= value < size for value, size in zip(click.voxel, shape)):
            raise ValueError(f"Click at voxel (k={click.k}, j={click.j}, i={click.i}) is outside the volume "
                             f"of {shape[0]} x {shape[1]} x {shape[2]} voxels (k x j x i).")


class VolumeSegmenter(abc.ABC):
    """Base class of the 3D tools: checks inputs and keeps the volume state, so subclasses only
    do the maths."""

    name = "base3d"
    #: One line shown to users: what the tool is and what it needs.
    description = ""

    def __init__(self) -> None:
        self._shape: Optional[Tuple[int, int, int]] = None
        self._volume: object = None
        self._spacing: Tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def volume_shape(self) -> Tuple[int, int, int]:
        if self._shape is None:
            raise RuntimeError("No volume is set: call set_volume(volume, spacing) before predict().")
        return self._shape

    @property
    def spacing(self) -> Tuple[float, float, float]:
        return self._spacing

    def set_volume(self, volume: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> None:
        """Take a grey volume [k, j, i] (any real dtype; finite) and its voxel spacing (mm)."""
        volume = np.asarray(volume)
        if volume.ndim != 3:
            raise ValueError(f"A 3D tool needs a grey volume [k, j, i]; got an array of shape {volume.shape}.")
        if min(volume.shape) < MIN_VOLUME_SIDE:
            raise ValueError(f"The volume is too small to segment in 3D: {volume.shape} voxels "
                             f"(at least {MIN_VOLUME_SIDE} along each axis).")
        if not np.issubdtype(volume.dtype, np.number) or np.issubdtype(volume.dtype, np.complexfloating):
            raise ValueError(f"The volume must hold real numbers; got {volume.dtype}.")
        spacing = tuple(float(s) for s in spacing)
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(f"The voxel spacing must be three positive numbers (mm); got {spacing}.")
        self._volume = self._embed(volume, spacing)
        self._shape = tuple(int(s) for s in volume.shape)
        self._spacing = spacing

    def reset_volume(self) -> None:
        self._shape, self._volume = None, None

    def predict(self, clicks: Sequence[VoxelClick], prior_mask: Optional[np.ndarray] = None,
                prior_state: object = None, box: Optional[BoxPrompt] = None) -> VolumePrediction:
        """Segment from all clicks so far plus the start (``prior_mask`` or ``box``) and the
        previous result (``prior_state``). See the module docstring."""
        shape = self.volume_shape
        check_voxels(clicks, shape)
        prior_mask = prior_as_bool(prior_mask, shape, "volume")
        if not clicks and prior_mask is None and box is None:
            raise ValueError("Nothing to segment from: give a click, a start mask or a box.")
        prediction = self._predict(self._volume, list(clicks), prior_mask, prior_state, box)
        prediction.mask = answer_as_bool(self.name, prediction.mask, shape, "volume")
        return prediction

    @abc.abstractmethod
    def _embed(self, volume: np.ndarray, spacing: Tuple[float, float, float]) -> object:
        """Everything that depends only on the volume."""

    @abc.abstractmethod
    def _predict(self, volume_state: object, clicks: list, prior_mask: Optional[np.ndarray], prior_state: object,
                 box: Optional[BoxPrompt]) -> VolumePrediction:
        """Segment; inputs are already checked."""
