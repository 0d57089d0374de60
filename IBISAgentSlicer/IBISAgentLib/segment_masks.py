"""Segments as the logic needs them: checked, created, compared, measured.

The worked slice itself is read and written by `slice_labelmap.SliceLabelmap`, in the segment's
own grid. `read_volume_mask` here resamples a whole segment to the reference volume's grid
(``slicer.util.arrayFromSegmentBinaryLabelmap``, uint8 ``[k, j, i]``): it is for comparing and
exporting, and nothing it returns is ever written back.
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
    if segmentation_node.GetScene() is None:
        raise SegmentError(
            f"The segmentation '{segmentation_node.GetName()}' is no longer in the scene; choose another one."
        )
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


def kept_segment(shown_node, chosen_node, chosen_id: str) -> str:
    """The segment the panel keeps selected when its segmentation selector shows
    ``shown_node``: ``chosen_id`` when that is the chosen segmentation (``chosen_node``) again
    and it still has that segment (e.g. the parameter node written back to the panel from a
    loaded scene), else "" (the selector's own first segment)."""
    if shown_node is None or shown_node is not chosen_node or not chosen_id:
        return ""
    return chosen_id if shown_node.GetSegmentation().GetSegment(chosen_id) is not None else ""


def nodes_alive(volume_node, segmentation_node, segment_id: str) -> bool:
    """The volume and the segmentation are in a scene and the segment still exists (an episode
    or a propagation on them may go on)."""
    return (volume_node.GetScene() is not None and segmentation_node.GetScene() is not None
            and segmentation_node.GetSegmentation().GetSegment(segment_id) is not None)


def read_volume_mask(segmentation_node, segment_id: str, reference_volume) -> np.ndarray:
    """The whole segment as uint8 [k, j, i] (0/1), resampled to the reference volume's grid."""
    import slicer

    check_segment(segmentation_node, segment_id)
    array = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation_node, segment_id, reference_volume)
    return (np.asarray(array) != 0).astype(np.uint8)


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
