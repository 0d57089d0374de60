"""A whole segment read and written as a 3D mask on the volume's grid, in the segment's own grid.

A 3D session (``ibisagent.volume_session``) works on a bool [k, j, i] mask on the volume's voxel
grid; the segment keeps its voxels in a labelmap of its own (maybe finer, shifted or cropped,
maybe sharing a layer with other segments). `SegmentVolume` is the 3D mask's view of the segment,
built from `slice_labelmap.SliceLabelmap`, one per slice along one fixed axis of the volume:

- `read` gives every slice as `SliceLabelmap.read` does (a volume voxel is in the segment when at
  least half of the segment voxels in its cell are);
- `write` changes only the slices inside the box of voxels that differ from what was last
  written, each through `SliceLabelmap.write`: only changed voxels change, other segments never,
  the grid stays the segment's own, and a voxel going back to its value at the start gets back
  its segment voxels of that time. Every slice is bound at the start (its baseline is the segment
  as it was then) and always along the same axis, so undoing to the start is exact in the
  segment's grid too;
- `edited` says, cheaply, whether someone may have changed the segment since the last write (its
  labelmap's modification time moved), so a hand edit is read back only when there may be one.

MRML only; main thread only. Masks are bool [k, j, i] on the volume's grid.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional

import numpy as np

from .slice_geometry import SliceGeometry
from .slice_labelmap import SliceLabelmap


class SegmentVolume:
    """Segment ``segment_id`` as a 3D mask (see the module docstring). ``geometry``: a slice
    geometry of the volume; its normal is the axis the segment is read and written along."""

    def __init__(self, segmentation, segment_id: str, volume, geometry: SliceGeometry) -> None:
        self.segmentation = segmentation
        self.segment_id = segment_id
        self.volume = volume
        self.geometry = geometry
        self.shape = tuple(int(n) for n in reversed(geometry.dimensions))
        count = geometry.dimensions[geometry.normal_axis]
        self._slices: Dict[int, SliceLabelmap] = {
            index: SliceLabelmap(segmentation, segment_id, volume, dataclasses.replace(geometry, slice_index=index))
            for index in range(count)
        }
        self._picks = {index: labelmap.geometry.kji_index() for index, labelmap in self._slices.items()}
        self.baseline = self._assemble(lambda labelmap: labelmap.baseline)
        self.written = self.baseline
        self._stamp = self._modified()

    def _assemble(self, read) -> np.ndarray:
        mask = np.zeros(self.shape, dtype=bool)
        for index, labelmap in self._slices.items():
            mask[self._picks[index]] = read(labelmap)
        mask.flags.writeable = False
        return mask

    def read(self) -> np.ndarray:
        """The segment as it is now, bool [k, j, i] (read-only)."""
        return self._assemble(lambda labelmap: labelmap.read())

    def write(self, mask: np.ndarray) -> int:
        """Make the segment read as ``mask`` (bool [k, j, i]) where it differs from what was last
        written; returns the number of slices written. On an error the slices written by this
        call are put back."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.shape:
            raise ValueError(f"The mask has shape {mask.shape}; the volume has {self.shape}.")
        differ = mask != self.written
        if not differ.any():
            return 0
        axis = 2 - self.geometry.normal_axis
        per_slice = np.flatnonzero(np.moveaxis(differ, axis, 0).reshape(self.shape[axis], -1).any(axis=1))
        done = []
        try:
            for index in per_slice:
                labelmap = self._slices[int(index)]
                labelmap.write(mask[self._picks[int(index)]])
                done.append(int(index))
        except BaseException:
            for index in done:
                self._slices[index].write(self.written[self._picks[index]])
            raise
        self.written = mask if not mask.flags.writeable else _frozen_copy(mask)
        self._stamp = self._modified()
        return len(done)

    def accept(self, mask: np.ndarray) -> None:
        """``mask`` (what `read` just gave after an edit by someone else) is now what the segment
        holds: later writes compare with it, and `edited` is false again."""
        self.written = _frozen_copy(mask)
        self._stamp = self._modified()

    def restore(self) -> None:
        """Every slice back to how it was when this object was made, exactly."""
        self.write(self.baseline)

    def edited(self) -> bool:
        """Whether the segment's labelmap was modified since the last write (by anyone: a hand
        edit, or another segment of a shared layer); `read` tells what changed."""
        return self._modified() != self._stamp

    def _modified(self) -> Optional[tuple]:
        image = self.segmentation.GetBinaryLabelmapInternalRepresentation(self.segment_id)
        if image is None:
            return None
        return image.GetAddressAsString("vtkObject"), int(image.GetMTime())


def _frozen_copy(mask: np.ndarray) -> np.ndarray:
    copy = np.array(mask, dtype=bool, copy=True)
    copy.flags.writeable = False
    return copy
