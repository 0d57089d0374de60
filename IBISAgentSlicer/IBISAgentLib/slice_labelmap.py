"""The worked slice of one segment, read and written in the segment's *own* labelmap grid.

A segment keeps its voxels in a labelmap with a geometry of its own: usually the volume's grid,
but Segment Editor > Specify geometry may make it finer (oversampling), shifted or cropped, and
several segments may share one labelmap layer (each with its own label value). Going through
the whole segment (export to the volume's grid, change one slice, import back) would resample
every slice of such a segment and cost time in proportion to the volume. `SliceLabelmap` does
neither: it works only on the segment voxels whose centres lie in the worked slice of the volume,
in the segment's own grid, and leaves every other voxel, and every other segment, alone.

Frames: slice masks are bool (rows, cols) in display order (`slice_geometry.SliceGeometry`).
A segment voxel belongs to the volume voxel whose cell holds its centre (a centre on a cell face
goes to the higher index). Grids must be axis-aligned with the volume (any permutation, flip,
spacing and offset); a rotated segment grid is refused with `SegmentError`.

- `read` gives pixel = 1 where at least half of the segment voxels under it are set (exactly the
  voxel when the grids are the same).
- `write` changes only pixels whose value differs from `read`. A changed pixel gets all its
  segment voxels set or cleared, except that a pixel going back to its value when this object
  was made gets back its voxels of that time, so undoing to an earlier mask is exact in the
  segment's grid too. ``write(read())`` changes nothing.

Writes happen in place in the segment's labelmap (its own voxels only). Voxels that need a
larger labelmap, or that hold another segment of a shared layer, are added with
``vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(..., MODE_MERGE_MAX, extent)``
with a modifier in the segment's own geometry: it grows the labelmap without resampling and
moves the segment to a layer of its own rather than overwrite a neighbour. (MODE_REPLACE is not
used: with an extent it replaces the *whole* segment by the modifier cropped to that extent.)
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from .segment_masks import SegmentError, check_segment
from .slice_geometry import ALIGNMENT_TOLERANCE, SliceGeometry, vtk_matrix_to_numpy

#: Added before rounding a voxel centre onto the volume's grid, so float noise in the matrices
#: cannot move a centre that sits on a cell face to the lower cell.
_ROUNDING_SLACK = 1e-6


def _valid(extent) -> bool:
    return extent[0] <= extent[1] and extent[2] <= extent[3] and extent[4] <= extent[5]


def _segment_grid(segmentation_node, internal, reference_volume) -> np.ndarray:
    """IJK -> RAS (4x4) of the segment's labelmap grid: its own when it has voxels, else the
    segmentation's reference geometry, else the volume's grid."""
    import slicer
    import vtk

    matrix = vtk.vtkMatrix4x4()
    if internal is not None and _valid(internal.GetExtent()):
        internal.GetImageToWorldMatrix(matrix)
        return vtk_matrix_to_numpy(matrix)
    name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    text = segmentation_node.GetSegmentation().GetConversionParameter(name)
    if text:
        image = slicer.vtkOrientedImageData()
        if slicer.vtkSegmentationConverter.DeserializeImageGeometry(text, image, False):
            image.GetImageToWorldMatrix(matrix)
            return vtk_matrix_to_numpy(matrix)
    reference_volume.GetIJKToRASMatrix(matrix)
    return vtk_matrix_to_numpy(matrix)


class _Axis:
    """One segment axis over the slab: its index range and the volume voxel of each index."""

    def __init__(self, indices: np.ndarray, volume_index: np.ndarray) -> None:
        self.first = int(indices[0])
        self.last = int(indices[-1])
        self.count = len(indices)
        # Groups of consecutive segment indices under one volume voxel (the index is monotonic).
        starts = np.flatnonzero(np.diff(volume_index)) + 1
        self.group_starts = np.concatenate([[0], starts]).astype(np.intp)
        self.group_sizes = np.diff(np.concatenate([self.group_starts, [self.count]]))
        self.group_volume_index = volume_index[self.group_starts]
        self.unit = bool(np.all(self.group_sizes == 1))

    def group(self, array: np.ndarray, axis: int) -> np.ndarray:
        """Sum ``array`` over each group along ``axis``."""
        return array if self.unit else np.add.reduceat(array, self.group_starts, axis=axis)

    def expand(self, array: np.ndarray, axis: int) -> np.ndarray:
        """Repeat each group's value over its segment indices along ``axis``."""
        return array if self.unit else np.repeat(array, self.group_sizes, axis=axis)


class SliceLabelmap:
    """Read and write the worked slice (``geometry``) of one segment in its own grid.

    Bind once per worked slice: the mapping is computed here, and the slice as it is now is kept
    as the baseline that `write` restores exactly. MRML only; main thread only.
    """

    def __init__(self, segmentation_node, segment_id: str, reference_volume, geometry: SliceGeometry) -> None:
        check_segment(segmentation_node, segment_id)
        self.segmentation_node = segmentation_node
        self.segment_id = segment_id
        self.geometry = geometry
        internal = segmentation_node.GetBinaryLabelmapInternalRepresentation(segment_id)
        self.grid = _segment_grid(segmentation_node, internal, reference_volume)
        self._map_axes()
        self.baseline_voxels = self._own_voxels()
        self.baseline = self._pixels(self.baseline_voxels)

    # -- mapping -------------------------------------------------------------------------------
    def _map_axes(self) -> None:
        geometry = self.geometry
        to_volume = np.linalg.inv(geometry.ijk_to_ras) @ self.grid  # segment IJK -> volume IJK
        linear = to_volume[:3, :3]
        # For each segment axis b, the volume axis it runs along, the scale and the offset.
        self._volume_axis_of = [0, 0, 0]
        for b in range(3):
            column = linear[:, b]
            a = int(np.argmax(np.abs(column)))
            if 1.0 - abs(column[a]) / np.linalg.norm(column) > ALIGNMENT_TOLERANCE:
                raise SegmentError(
                    f"The segment's labelmap grid in '{self.segmentation_node.GetName()}' is rotated against the "
                    "volume, so one slice of the volume is not one slab of the segment. Make its geometry follow "
                    "the volume (Segment Editor > Specify geometry > the volume) and try again."
                )
            self._volume_axis_of[b] = a
        if sorted(self._volume_axis_of) != [0, 1, 2]:
            raise SegmentError("The segment's labelmap axes do not match three distinct volume axes.")
        self._axes: List[_Axis] = []
        for b in range(3):
            a = self._volume_axis_of[b]
            scale, offset = linear[a, b], to_volume[a, 3]
            if a == geometry.normal_axis:
                low, high = geometry.slice_index, geometry.slice_index
            else:
                low, high = 0, geometry.dimensions[a] - 1
            ends = sorted(((low - 0.5 - offset) / scale, (high + 0.5 - offset) / scale))
            candidates = np.arange(int(np.floor(ends[0])) - 1, int(np.ceil(ends[1])) + 2)
            volume_index = np.floor(scale * candidates + offset + 0.5 + _ROUNDING_SLACK).astype(np.int64)
            keep = (volume_index >= low) & (volume_index <= high)
            if not keep.any():
                raise SegmentError(
                    f"The segment's labelmap grid in '{self.segmentation_node.GetName()}' has no voxel in the worked "
                    "slice (it is coarser than the volume); make its geometry follow the volume and try again."
                )
            self._axes.append(_Axis(candidates[keep], volume_index[keep]))
        self._normal = self._volume_axis_of.index(geometry.normal_axis)
        self._row_b = self._volume_axis_of.index(geometry.row_axis)
        self._col_b = self._volume_axis_of.index(geometry.col_axis)
        # Display row/col of each group along the in-plane segment axes.
        rows, cols = geometry.shape
        row_index = self._axes[self._row_b].group_volume_index
        col_index = self._axes[self._col_b].group_volume_index
        self._group_rows = (rows - 1 - row_index) if geometry.row_sign > 0 else row_index
        self._group_cols = col_index if geometry.col_sign > 0 else (cols - 1 - col_index)
        self._voxels_per_pixel = self._to_display(self._in_plane(self._group_sum(np.ones(self._slab_shape(), np.uint8))))
        if not self._voxels_per_pixel.all():
            raise SegmentError(
                f"The segment's labelmap grid in '{self.segmentation_node.GetName()}' is coarser than the volume, "
                "so some pixels of the slice hold no segment voxel. Make its geometry follow the volume "
                "(Segment Editor > Specify geometry > the volume) and try again."
            )

    # -- the slab in the segment's array ---------------------------------------------------------
    def _internal(self):
        image = self.segmentation_node.GetBinaryLabelmapInternalRepresentation(self.segment_id)
        if image is None:
            raise SegmentError(f"The segment {self.segment_id!r} has no labelmap; choose an existing segment.")
        return image

    def _label(self) -> int:
        segment = self.segmentation_node.GetSegmentation().GetSegment(self.segment_id)
        if segment is None:
            raise SegmentError(
                f"The segmentation '{self.segmentation_node.GetName()}' has no segment with ID "
                f"{self.segment_id!r} any more; choose an existing segment."
            )
        return int(segment.GetLabelValue())

    def _overlap(self, image) -> Optional[Tuple[Tuple[slice, ...], Tuple[slice, ...]]]:
        """(slab slices, array slices) [k, j, i] where the slab meets the allocated labelmap."""
        extent = image.GetExtent()
        if not _valid(extent):
            return None
        if not np.allclose(self._image_matrix(image), self.grid, atol=1e-6):
            raise SegmentError(
                f"The geometry of the segment {self.segment_id!r} changed while the agent worked on this slice; "
                "press 'Continue my mask' to start again."
            )
        slab, array = [], []
        for b in (2, 1, 0):
            axis = self._axes[b]
            low, high = max(axis.first, extent[2 * b]), min(axis.last, extent[2 * b + 1])
            if low > high:
                return None
            slab.append(slice(low - axis.first, high - axis.first + 1))
            array.append(slice(low - extent[2 * b], high - extent[2 * b] + 1))
        return tuple(slab), tuple(array)

    @staticmethod
    def _image_matrix(image) -> np.ndarray:
        import vtk

        matrix = vtk.vtkMatrix4x4()
        image.GetImageToWorldMatrix(matrix)
        return vtk_matrix_to_numpy(matrix)

    @staticmethod
    def _array(image) -> np.ndarray:
        from vtk.util.numpy_support import vtk_to_numpy

        return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(tuple(reversed(image.GetDimensions())))

    def _slab_shape(self) -> Tuple[int, int, int]:
        return self._axes[2].count, self._axes[1].count, self._axes[0].count

    def _own_voxels(self) -> np.ndarray:
        """uint8 [k, j, i] over the slab box: 1 where the voxel belongs to this segment."""
        voxels = np.zeros(self._slab_shape(), dtype=np.uint8)
        image = self._internal()
        overlap = self._overlap(image)
        if overlap is not None:
            slab, array = overlap
            voxels[slab] = self._array(image)[array] == self._label()
        return voxels

    # -- slab <-> pixels -------------------------------------------------------------------------
    def _group_sum(self, voxels: np.ndarray) -> np.ndarray:
        total = voxels.sum(axis=2 - self._normal, keepdims=True, dtype=np.int64)
        for b in (self._row_b, self._col_b):
            total = self._axes[b].group(total, 2 - b)
        return total

    def _in_plane(self, array3: np.ndarray) -> np.ndarray:
        """A [k, j, i] array with a single normal layer as 2D [row group, col group]."""
        plane = np.squeeze(array3, axis=2 - self._normal)
        row_first = (2 - self._row_b) < (2 - self._col_b)
        return plane if row_first else plane.T

    def _to_display(self, groups: np.ndarray) -> np.ndarray:
        out = np.zeros(self.geometry.shape, dtype=groups.dtype)
        out[np.ix_(self._group_rows, self._group_cols)] = groups
        return out

    def _from_display(self, pixels: np.ndarray) -> np.ndarray:
        """Display (rows, cols) -> [k, j, i] over the slab box (broadcast along the normal)."""
        groups = pixels[np.ix_(self._group_rows, self._group_cols)]
        row_axis, col_axis = 2 - self._row_b, 2 - self._col_b
        plane = groups if row_axis < col_axis else groups.T
        plane = self._axes[self._row_b].expand(plane, 0 if row_axis < col_axis else 1)
        plane = self._axes[self._col_b].expand(plane, 1 if row_axis < col_axis else 0)
        return np.broadcast_to(np.expand_dims(plane, 2 - self._normal), self._slab_shape())

    def _pixels(self, voxels: np.ndarray) -> np.ndarray:
        counts = self._to_display(self._in_plane(self._group_sum(voxels)))
        return 2 * counts >= self._voxels_per_pixel

    # -- public --------------------------------------------------------------------------------
    def read(self) -> np.ndarray:
        """The segment on the worked slice: bool (rows, cols), display order."""
        return self._pixels(self._own_voxels())

    def write(self, mask: np.ndarray) -> bool:
        """Make the worked slice read as ``mask`` (bool (rows, cols)); see the module docstring
        for which voxels change. Returns False (writing nothing) when it already does. On an
        error the segment is put back as it was before the call."""
        mask = np.asarray(mask)
        if mask.shape != self.geometry.shape:
            raise SegmentError(f"The mask has shape {mask.shape}; the slice has shape {self.geometry.shape}.")
        mask = mask.astype(bool)
        voxels = self._own_voxels()
        changed = self._pixels(voxels) != mask
        if not changed.any():
            return False
        back_to_baseline = changed & (mask == self.baseline)
        target = np.where(self._from_display(changed), self._from_display(mask).astype(np.uint8), voxels)
        restore = self._from_display(back_to_baseline)
        target = np.where(restore, self.baseline_voxels, target)
        self._apply(voxels, target)
        return True

    def _apply(self, voxels: np.ndarray, target: np.ndarray) -> None:
        label = self._label()
        image = self._internal()
        overlap = self._overlap(image)
        saved = None
        if overlap is not None:
            slab, array = overlap
            region = self._array(image)[array]
            saved = region.copy()
            removed = (voxels[slab] == 1) & (target[slab] == 0)
            region[removed] = 0
        added = (voxels == 0) & (target == 1)
        in_place = np.zeros_like(added)
        if overlap is not None:
            free = region == 0
            in_place[slab] = added[slab] & free
            region[in_place[slab]] = label
        rest = added & ~in_place
        try:
            if rest.any():
                self._merge(rest)
        except BaseException:
            if saved is not None:
                region[...] = saved
                image.Modified()
            raise
        image.Modified()
        self.segmentation_node.GetSegmentation().GetSegment(self.segment_id).Modified()

    def _merge(self, voxels: np.ndarray) -> None:
        """Add ``voxels`` (bool [k, j, i] over the slab) with SetBinaryLabelmapToSegment:
        grows the labelmap as needed, in the segment's own geometry."""
        import slicer
        import vtk
        from vtk.util.numpy_support import vtk_to_numpy

        where = np.nonzero(voxels)
        low = [int(w.min()) for w in where]
        high = [int(w.max()) for w in where]
        k0, j0, i0 = (self._axes[2].first + low[0], self._axes[1].first + low[1], self._axes[0].first + low[2])
        k1, j1, i1 = (self._axes[2].first + high[0], self._axes[1].first + high[1], self._axes[0].first + high[2])
        modifier = slicer.vtkOrientedImageData()
        matrix = vtk.vtkMatrix4x4()
        for r in range(4):
            for c in range(4):
                matrix.SetElement(r, c, float(self.grid[r, c]))
        modifier.SetGeometryFromImageToWorldMatrix(matrix)
        modifier.SetExtent(i0, i1, j0, j1, k0, k1)
        modifier.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        values = vtk_to_numpy(modifier.GetPointData().GetScalars()).reshape((k1 - k0 + 1, j1 - j0 + 1, i1 - i0 + 1))
        values[...] = voxels[low[0]:high[0] + 1, low[1]:high[1] + 1, low[2]:high[2] + 1]
        logic = slicer.vtkSlicerSegmentationsModuleLogic
        if not logic.SetBinaryLabelmapToSegment(modifier, self.segmentation_node, self.segment_id,
                                                logic.MODE_MERGE_MAX, modifier.GetExtent()):
            raise SegmentError(f"Slicer could not add the new voxels to the segment {self.segment_id!r}.")
