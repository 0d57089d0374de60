"""Segment <-> slice mask, markups read-back, click history tags, undo snapshots, export."""

from __future__ import annotations

import json

import nrrd
import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk

from slicer_scene import ORIENTATIONS, add_segmentation, add_volume, make_ijk_to_ras, place_view_on_voxel

from IBISAgentLib import export, proposal_markups, segment_masks
from IBISAgentLib.slice_geometry import SliceGeometryError, slice_geometry, vtk_matrix_to_numpy
from IBISAgentLib.undo import SliceUndoStack
from ibisagent.clicks import AGENT, USER, USER_MOVED, Click

SHAPE_KJI = (6, 7, 9)


def _setup(scene, orientation="flipped-permuted", view="Yellow"):
    directions, spacing = ORIENTATIONS[orientation]
    rng = np.random.default_rng(1)
    volume = add_volume(scene, rng.integers(0, 100, SHAPE_KJI).astype(np.int16),
                        make_ijk_to_ras(directions, spacing, (1.0, 2.0, 3.0)))
    segmentation, ids = add_segmentation(scene, volume, ("target", "other"))
    first = (rng.random(SHAPE_KJI) > 0.6).astype(np.uint8)
    second = (rng.random(SHAPE_KJI) > 0.5).astype(np.uint8)  # overlaps the first
    slicer.util.updateSegmentBinaryLabelmapFromArray(first, segmentation, ids[0], volume)
    slicer.util.updateSegmentBinaryLabelmapFromArray(second, segmentation, ids[1], volume)
    place_view_on_voxel(scene, view, volume, (3, 2, 4))
    return volume, segmentation, ids, first, second, slice_geometry(volume, view)


@pytest.mark.parametrize("view", ["Red", "Yellow", "Green"])
def test_write_touches_only_the_slice_of_the_segment(scene, view):
    volume, segmentation, ids, first, second, geometry = _setup(scene, view=view)
    read = segment_masks.read_slice_mask(segmentation, ids[0], volume, geometry)
    assert np.array_equal(read, geometry.extract(first).astype(bool))
    new = np.zeros(geometry.shape, dtype=bool)
    new[1:3, 2:5] = True
    assert segment_masks.write_slice_mask(segmentation, ids[0], volume, geometry, new)
    after_first = segment_masks.read_volume_mask(segmentation, ids[0], volume)
    after_second = segment_masks.read_volume_mask(segmentation, ids[1], volume)
    assert np.array_equal(after_second, second)
    assert np.array_equal(geometry.extract(after_first).astype(bool), new)
    untouched = np.ones(SHAPE_KJI, dtype=bool)
    untouched[geometry.kji_index()] = False
    assert np.array_equal(after_first[untouched], first[untouched])
    # Writing the same mask again changes nothing and reports so.
    assert not segment_masks.write_slice_mask(segmentation, ids[0], volume, geometry, new)


def test_undo_stack_is_bit_exact(scene):
    volume, segmentation, ids, first, _, geometry = _setup(scene)
    stack = SliceUndoStack()
    masks = [segment_masks.read_slice_mask(segmentation, ids[0], volume, geometry)]
    rng = np.random.default_rng(5)
    for step in range(3):
        stack.push(masks[-1], step)
        new = rng.random(geometry.shape) > 0.5
        segment_masks.write_slice_mask(segmentation, ids[0], volume, geometry, new)
        masks.append(new)
    for expected in reversed(masks[:-1]):
        snapshot = stack.pop()
        segment_masks.write_slice_mask(segmentation, ids[0], volume, geometry, snapshot.mask)
        assert np.array_equal(segment_masks.read_slice_mask(segmentation, ids[0], volume, geometry), expected)
    assert stack.pop() is None
    assert np.array_equal(segment_masks.read_volume_mask(segmentation, ids[0], volume), first)


def test_missing_segment_is_a_clear_error(scene):
    volume, segmentation, _, _, _, geometry = _setup(scene)
    with pytest.raises(segment_masks.SegmentError, match="no segment"):
        segment_masks.read_slice_mask(segmentation, "nope", volume, geometry)


def _move(node, index, ras):
    node.SetNthControlPointPosition(index, float(ras[0]), float(ras[1]), float(ras[2]))


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_markups_edits_read_back_exactly(scene, orientation):
    volume, _, _, _, _, geometry = _setup(scene, orientation, "Green")
    markups = proposal_markups.ProposalMarkups(geometry)
    first = markups.show_proposal(Click(2, 3, True, AGENT))
    assert markups.proposals.GetNthControlPointSelected(first)
    assert markups.read_clicks() == [Click(2, 3, True, AGENT)]
    # Move: drag by a fraction of a voxel keeps the pixel; a whole voxel changes it.
    nudge = geometry.pixel_to_ras(2, 3) + 0.3 * (geometry.pixel_to_ras(3, 3) - geometry.pixel_to_ras(2, 3))
    _move(markups.proposals, first, nudge)
    assert markups.read_clicks() == [Click(2, 3, True, AGENT)]
    _move(markups.proposals, first, geometry.pixel_to_ras(4, 1))
    assert markups.read_clicks() == [Click(4, 1, True, USER_MOVED)]
    # Flip, then add a user point, then delete the proposal.
    markups.flip(first)
    added = markups.add_user_point(0, 2, False)
    raw = markups.proposals.AddControlPoint(*[float(v) for v in geometry.pixel_to_ras(1, 1)])  # placed in the view
    assert markups.read_clicks() == [Click(4, 1, False, USER_MOVED), Click(0, 2, False, USER), Click(1, 1, True, USER)]
    assert markups.proposals.GetNthControlPointLabel(first) == "-"
    markups.proposals.RemoveNthControlPoint(first)
    assert markups.read_clicks() == [Click(0, 2, False, USER), Click(1, 1, True, USER)]
    assert (added, raw) == (1, 2)
    # Moving a point back onto the proposal and polarity restores "agent".
    markups.clear_proposals()
    index = markups.show_proposal(Click(1, 2, False, AGENT))
    assert not markups.proposals.GetNthControlPointSelected(index)
    markups.flip(index)
    markups.flip(index)
    assert markups.read_clicks() == [Click(1, 2, False, AGENT)]


def test_markups_off_slice_point_is_refused(scene):
    volume, _, _, _, _, geometry = _setup(scene, "lps", "Red")
    markups = proposal_markups.ProposalMarkups(geometry)
    index = markups.show_proposal(Click(2, 2, True, AGENT))
    off = geometry.ijk_to_ras_point(np.array(geometry.pixel_to_ijk(2, 2)) + np.eye(3)[geometry.normal_axis] * 2)
    _move(markups.proposals, index, off)
    with pytest.raises(SliceGeometryError, match="off the worked slice"):
        markups.read_clicks()


def test_accepted_list_is_locked_and_styled(scene):
    volume, _, _, _, _, geometry = _setup(scene, "ras", "Red")
    markups = proposal_markups.ProposalMarkups(geometry)
    markups.show_accepted([Click(1, 1, True, AGENT), Click(2, 0, False, USER)])
    assert markups.accepted.GetLocked() and not markups.proposals.GetLocked()
    assert markups.accepted.GetNumberOfControlPoints() == 2
    assert markups.accepted.GetNthControlPointLocked(1)
    display = markups.proposals.GetDisplayNode()
    assert tuple(display.GetSelectedColor()) == proposal_markups.POSITIVE_COLOR
    assert tuple(display.GetColor()) == proposal_markups.NEGATIVE_COLOR
    assert markups.accepted.GetDisplayNode().GetGlyphType() != display.GetGlyphType()
    # The same nodes are found again, not duplicated.
    again = proposal_markups.ProposalMarkups(geometry)
    assert again.proposals is markups.proposals or again.proposals.GetID() == markups.proposals.GetID()


def test_history_survives_seg_nrrd_and_exports_have_geometry(scene, tmp_path):
    volume, segmentation, ids, first, _, geometry = _setup(scene, "flipped-permuted", "Red")
    entry = proposal_markups.history_entry(geometry, [Click(1, 2, True, AGENT), Click(0, 0, False, USER)], 1, "a|b: c")
    proposal_markups.write_history(segmentation, ids[0], [entry])
    assert proposal_markups.read_history(segmentation, ids[0]) == [json.loads(json.dumps(entry))]
    assert proposal_markups.clicks_on_slice([entry], geometry) == [Click(1, 2, True, AGENT), Click(0, 0, False, USER)]

    written = export.save_segment(segmentation, ids[0], str(tmp_path / "case"), volume)
    assert [p.rsplit("/", 1)[1] for p in written] == ["case.seg.nrrd", "case.nii.gz"]

    # NIfTI labelmap: same voxels and the volume's geometry (ITK reads LPS).
    image = sitk.ReadImage(written[1])
    matrix = vtk_matrix_to_numpy(_ijk_to_ras(volume))
    lps = np.diag([-1.0, -1.0, 1.0])
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    assert np.allclose(image.GetSpacing(), spacing, atol=1e-5)
    assert np.allclose(np.array(image.GetDirection()).reshape(3, 3), lps @ (matrix[:3, :3] / spacing), atol=1e-5)
    assert np.allclose(image.GetOrigin(), lps @ matrix[:3, 3], atol=1e-4)
    assert np.array_equal(sitk.GetArrayFromImage(image), first)

    # .seg.nrrd: segment voxels and tags come back, geometry matches after placing by origin.
    data, header = nrrd.read(written[0])
    assert "IBISAgent.ClickHistory:" in header["Segment0_Tags"]
    other = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(written[0])
    assert storage.ReadData(other)
    segment_id = other.GetSegmentation().GetNthSegmentID(0)
    assert np.array_equal(segment_masks.read_volume_mask(other, segment_id, volume), first)
    assert proposal_markups.read_history(other, segment_id) == proposal_markups.read_history(segmentation, ids[0])
    assert header["space"] == "left-posterior-superior"
    assert np.allclose(np.asarray(header["space directions"], dtype=float), (lps @ matrix[:3, :3]).T, atol=1e-5)
    assert np.allclose(header["space origin"], lps @ matrix[:3, 3], atol=1e-4)
    assert np.array_equal(data, first.transpose(2, 1, 0))  # nrrd files are [i, j, k]


def _ijk_to_ras(volume):
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return matrix
