"""The slices a person (or the agent) looks at in a volume: named planes over one voxel grid.

A 3D session (`ibisagent.volume_session`) works on one array in the file's own voxel order,
[k, j, i], but the agent looks at 2D slices in *display orientation*, as a viewer shows them,
and a click placed on such a slice names one voxel. `VolumeViews` holds, for each named plane,
how its slices lie in the array: which array axis the slice index runs along and which two are
the image's rows and columns, each possibly counted backwards. Everything else is indexing (no
resampling, no copies): ``stack(plane, array)[index]`` is slice ``index`` of that plane, and
`to_voxel` / `to_slice` convert a pixel (x = column, y = row) to the voxel (k, j, i) and back.

The layout of a plane is decided elsewhere, by the one owner of each kind of orientation:

- files: `views_of_image` asks `ibisagent.image_io.display_axes` (the LPS display orientation of
  ``ibisagent continue --plane``), planes "axial", "coronal", "sagittal";
- Slicer: the adapter builds the planes from each view's slice geometry
  (``IBISAgentLib.slice_geometry``), one plane per view ("Red", "Yellow", "Green").

Standard library + numpy (the Slicer adapter imports it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class PlaneAxes:
    """Where one plane's (slice index, row, column) lie in a [k, j, i] array: each is (array
    axis, reversed); ``reversed``: the display index counts that array axis backwards."""

    index: Tuple[int, bool]
    row: Tuple[int, bool]
    col: Tuple[int, bool]

    def __post_init__(self) -> None:
        axes = sorted(int(a[0]) for a in (self.index, self.row, self.col))
        if axes != [0, 1, 2]:
            raise ValueError(f"A plane's index, rows and columns must be three distinct array axes; got {self}.")


class VolumeViews:
    """Named planes over one array of ``shape`` [k, j, i]; see the module docstring."""

    def __init__(self, shape: Sequence[int], planes: Dict[str, PlaneAxes]) -> None:
        self.shape: Tuple[int, int, int] = tuple(int(s) for s in shape)
        if len(self.shape) != 3:
            raise ValueError(f"Views need a volume shape [k, j, i]; got {shape}.")
        if not planes:
            raise ValueError("Give at least one plane to look at the volume through.")
        self._planes = dict(planes)

    @property
    def planes(self) -> Tuple[str, ...]:
        return tuple(self._planes)

    def axes(self, plane: str) -> PlaneAxes:
        if plane not in self._planes:
            raise ValueError(f"Unknown plane {plane!r}; this volume is seen through: {', '.join(self._planes)}.")
        return self._planes[plane]

    def normal_axis(self, plane: str) -> int:
        """The array axis (0 = k, 1 = j, 2 = i) that ``plane``'s slice index runs along."""
        return int(self.axes(plane).index[0])

    def count(self, plane: str) -> int:
        """How many slices ``plane`` has."""
        return self.shape[self.normal_axis(plane)]

    def slice_shape(self, plane: str) -> Tuple[int, int]:
        """(rows, cols) of ``plane``'s slices."""
        axes = self.axes(plane)
        return self.shape[axes.row[0]], self.shape[axes.col[0]]

    def stack(self, plane: str, array: np.ndarray) -> np.ndarray:
        """``array`` ([k, j, i], or [k, j, i, c]) as ``plane``'s slices [index, row, col(, c)]:
        a view, not a copy."""
        array = np.asarray(array)
        if tuple(array.shape[:3]) != self.shape:
            raise ValueError(f"The array has shape {array.shape[:3]}; the volume has {self.shape}.")
        axes = self.axes(plane)
        order = (axes.index[0], axes.row[0], axes.col[0]) + tuple(range(3, array.ndim))
        view = array.transpose(order)
        flips = tuple(slice(None, None, -1) if reverse else slice(None)
                      for reverse in (axes.index[1], axes.row[1], axes.col[1]))
        return view[flips]

    def to_voxel(self, plane: str, index: int, x: int, y: int) -> Tuple[int, int, int]:
        """The voxel (k, j, i) under pixel (x = column, y = row) of slice ``index``."""
        axes = self.axes(plane)
        voxel = [0, 0, 0]
        for (axis, reverse), value in ((axes.index, index), (axes.row, y), (axes.col, x)):
            size = self.shape[axis]
            if not 0 <= int(value) < size:
                raise ValueError(f"Pixel (x={x}, y={y}) on {plane} slice {index} is outside the volume "
                                 f"({self.count(plane)} slices of {self.slice_shape(plane)[1]} x "
                                 f"{self.slice_shape(plane)[0]} pixels).")
            voxel[axis] = size - 1 - int(value) if reverse else int(value)
        return voxel[0], voxel[1], voxel[2]

    def to_slice(self, plane: str, voxel: Sequence[int]) -> Tuple[int, int, int]:
        """(slice index, x, y) of voxel (k, j, i) in ``plane``."""
        voxel = [int(v) for v in voxel]
        if not all(0 <= v < s for v, s in zip(voxel, self.shape)):
            raise ValueError(f"Voxel {tuple(voxel)} is outside the volume of {self.shape} voxels (k, j, i).")
        axes = self.axes(plane)
        found = []
        for axis, reverse in (axes.index, axes.col, axes.row):
            found.append(self.shape[axis] - 1 - voxel[axis] if reverse else voxel[axis])
        return found[0], found[1], found[2]

    def index_of(self, plane: str, array_index: int) -> int:
        """The slice index of ``plane`` that holds array index ``array_index`` along its normal."""
        axis, reverse = self.axes(plane).index
        return self.shape[axis] - 1 - int(array_index) if reverse else int(array_index)


def views_of_image(image) -> VolumeViews:
    """The three display planes of a SimpleITK volume, as ``ibisagent continue --plane`` shows
    them (`ibisagent.image_io.display_axes`)."""
    from .image_io import PLANES, display_axes

    shape = tuple(reversed(image.GetSize()[:3]))
    return VolumeViews(shape, {plane: PlaneAxes(*display_axes(image, plane)) for plane in PLANES})
