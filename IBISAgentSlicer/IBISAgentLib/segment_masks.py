"""A segment's binary labelmap on one slice, read and written as a 2D bool mask.

Masks here are bool (rows, cols) in display order, aligned pixel for pixel with the slice image
of `slice_geometry.SliceGeometry` (row 0 at the top of the view). The whole-volume arrays are
``[k, j, i]`` uint8 in the reference volume's voxel grid, read and written with
``slicer.util.arrayFromSegmentBinaryLabelmap`` / ``updateSegmentBinaryLabelmapFromArray``.

`write_slice_mask` changes only the worked slice of only the chosen segment: the rest of the
segment's voxels are read first and written back unchanged, and other segments are not touched.
"""

from __future__ import annotations

import numpy as np

from .slice_geometry import SliceGeometry, check_untransformed


class SegmentError(ValueError):
    """The segment cannot be read or written (missing segment, wrong geometry)."""


def check_segment(segmentation_node, segment_id: str):
    """The vtkSegment ``segment_id`` of ``segmentation_node``, or SegmentError saying what to do."""
    if segmentation_node is None:
        raise SegmentError("No segmentation is selected; choose or create one first.")
    check_untransformed(segmentation_node, "segmentation")
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id) if segment_id else None
    if segment is None:
        raise SegmentError(
            f"The segmentation '{segmentation_node.GetName()}' has no segment with ID "
            f"{segment_id!r}; choose an existing segment or add one."
        )
    return segment


def ensure_segment(segmentation_node, segment_id=None, name: str = "IBISAgent") -> str:
    """``segment_id`` if it exists, else the ID of a new empty segment called ``name``."""
    if segment_id and segmentation_node.GetSegmentation().GetSegment(segment_id) is not None:
        return segment_id
    return segmentation_node.GetSegmentation().AddEmptySegment(segment_id or "", name)


def read_volume_mask(segmentation_node, segment_id: str, reference_volume) -> np.ndarray:
    """The segment as uint8 [k, j, i] (0/1) in the reference volume's voxel grid."""
    import slicer

    check_segment(segmentation_node, segment_id)
    array = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation_node, segment_id, reference_volume)
    return (np.asarray(array) != 0).astype(np.uint8)


def read_slice_mask(segmentation_node, segment_id: str, reference_volume, geometry: SliceGeometry) -> np.ndarray:
    """The segment on the worked slice: bool (rows, cols), display order."""
    return geometry.extract(read_volume_mask(segmentation_node, segment_id, reference_volume)).astype(bool)


def write_volume_mask(segmentation_node, segment_id: str, reference_volume, array_kji: np.ndarray) -> None:
    """Replace the segment's labelmap with ``array_kji`` (0/1, [k, j, i], reference grid)."""
    import slicer

    check_segment(segmentation_node, segment_id)
    slicer.util.updateSegmentBinaryLabelmapFromArray(
        np.ascontiguousarray(array_kji, dtype=np.uint8), segmentation_node, segment_id, reference_volume
    )


def write_slice_mask(
    segmentation_node, segment_id: str, reference_volume, geometry: SliceGeometry, mask: np.ndarray
) -> bool:
    """Write bool (rows, cols) ``mask`` into the worked slice of the segment only.

    Returns False (and writes nothing) when the slice already holds exactly ``mask``. If the
    write fails, the segment's previous labelmap is put back before the error is re-raised.
    """
    mask = np.asarray(mask)
    if mask.shape != geometry.shape:
        raise SegmentError(f"The mask has shape {mask.shape}; the slice has shape {geometry.shape}.")
    before = read_volume_mask(segmentation_node, segment_id, reference_volume)
    if np.array_equal(geometry.extract(before).astype(bool), mask.astype(bool)):
        return False
    after = geometry.insert(before, mask.astype(np.uint8))
    try:
        write_volume_mask(segmentation_node, segment_id, reference_volume, after)
    except Exception:
        write_volume_mask(segmentation_node, segment_id, reference_volume, before)
        raise
    return True


def save_scene_undo_state(segmentation_node) -> bool:
    """Record an MRML undo state before a write when the scene keeps them, so Slicer's own
    Edit > Undo reverts an agent step too (the logic's Undo stays the exact, step-aware one).
    Returns whether a state was saved."""
    scene = segmentation_node.GetScene()
    if scene is None or not scene.GetUndoFlag():
        return False
    segmentation_node.SetUndoEnabled(True)
    scene.SaveStateForUndo()
    return True


def mask_statistics(mask: np.ndarray, geometry: SliceGeometry) -> dict:
    """Pixel count, area in mm^2 and bounding box (col/row, inclusive) of a slice mask."""
    mask = np.asarray(mask, dtype=bool)
    spacing = np.linalg.norm(geometry.ijk_to_ras[:3, :3], axis=0)
    pixel_area = float(spacing[geometry.col_axis] * spacing[geometry.row_axis])
    pixels = int(mask.sum())
    stats = {"pixels": pixels, "area_mm2": pixels * pixel_area, "bbox": None}
    if pixels:
        rows, cols = np.nonzero(mask)
        stats["bbox"] = {"col_min": int(cols.min()), "col_max": int(cols.max()),
                         "row_min": int(rows.min()), "row_max": int(rows.max())}
    return stats
