"""Segment slices in the segment's own grid, markups read-back, click history tags, export."""

from __future__ import annotations

import json

import nrrd
import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk

from slicer_scene import (
    ORIENTATIONS,
    add_segmentation,
    add_volume,
    make_ijk_to_ras,
    own_labelmap,
    place_view_on_voxel,
    set_fine_segment,
)

from IBISAgentLib import export, proposal_markups, segment_masks
from IBISAgentLib.slice_geometry import SliceGeometryError, slice_geometry, vtk_matrix_to_numpy
from IBISAgentLib.slice_labelmap import SegmentError, SliceLabelmap
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
    labelmap = SliceLabelmap(segmentation, ids[0], volume, geometry)
    assert np.array_equal(labelmap.read(), geometry.extract(first).astype(bool))
    new = np.zeros(geometry.shape, dtype=bool)
    new[1:3, 2:5] = True
    assert labelmap.write(new)
    after_first = segment_masks.read_volume_mask(segmentation, ids[0], volume)
    after_second = segment_masks.read_volume_mask(segmentation, ids[1], volume)
    assert np.array_equal(after_second, second)
    assert np.array_equal(geometry.extract(after_first).astype(bool), new)
    untouched = np.ones(SHAPE_KJI, dtype=bool)
    untouched[geometry.kji_index()] = False
    assert np.array_equal(after_first[untouched], first[untouched])
    # Writing the same mask again changes nothing and reports so; the baseline comes back exactly.
    assert not labelmap.write(new)
    assert labelmap.write(labelmap.baseline)
    assert np.array_equal(segment_masks.read_volume_mask(segmentation, ids[0], volume), first)


@pytest.mark.parametrize("view", ["Red", "Yellow", "Green"])
def test_a_finer_segment_keeps_its_grid_and_every_other_voxel(scene, view):
    volume, segmentation, ids, _first, second, geometry = _setup(scene, "lps", view)
    grid, voxels = set_fine_segment(segmentation, ids[0], volume)
    labelmap = SliceLabelmap(segmentation, ids[0], volume, geometry)
    blocks = voxels.reshape(SHAPE_KJI[0], 2, SHAPE_KJI[1], 2, SHAPE_KJI[2], 2).sum(axis=(1, 3, 5))
    assert np.array_equal(labelmap.read(), geometry.extract(blocks >= 4))  # half or more of the 8
    new = labelmap.read()
    new[:3, :4] = ~new[:3, :4]
    assert labelmap.write(new) and np.array_equal(labelmap.read(), new)
    after, matrix = own_labelmap(segmentation, ids[0], voxels.shape)
    assert np.allclose(matrix, grid)  # still the segment's own, finer grid
    slab = np.zeros(SHAPE_KJI, bool)
    slab[geometry.kji_index()] = True
    slab = slab.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    assert np.array_equal(after[~slab], voxels[~slab])  # every voxel outside the slab, bit for bit
    # Pixels the write did not change keep their fine voxels too.
    kept = np.zeros(SHAPE_KJI, bool)
    kept[geometry.kji_index()] = (new == labelmap.baseline)
    kept = kept.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    assert np.array_equal(after[kept], voxels[kept])
    assert np.array_equal(segment_masks.read_volume_mask(segmentation, ids[1], volume), second)
    # Going back restores the fine voxels exactly (undo in the segment's own grid).
    labelmap.write(labelmap.baseline)
    assert np.array_equal(own_labelmap(segmentation, ids[0], voxels.shape)[0], voxels)


def test_an_empty_segment_grows_on_the_reference_grid(scene):
    volume, segmentation, _ids, _first, _second, geometry = _setup(scene, "permuted", "Green")
    segment_id = segmentation.GetSegmentation().AddEmptySegment("new", "new")
    labelmap = SliceLabelmap(segmentation, segment_id, volume, geometry)
    assert not labelmap.read().any()
    mask = np.zeros(geometry.shape, bool)
    mask[1:4, 2:6] = True
    assert labelmap.write(mask) and np.array_equal(labelmap.read(), mask)
    whole = segment_masks.read_volume_mask(segmentation, segment_id, volume)
    assert whole.sum() == mask.sum() and np.array_equal(geometry.extract(whole).astype(bool), mask)
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    assert np.allclose(own_labelmap(segmentation, segment_id, SHAPE_KJI)[1], vtk_matrix_to_numpy(matrix))


def test_a_shared_layer_neighbour_is_never_overwritten(scene):
    volume, segmentation, ids, _first, _second, geometry = _setup(scene, "ras", "Red")
    shared = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, ids[1], volume)
    segmentation.GetSegmentation().CollapseBinaryLabelmaps(False)  # one layer where they do not overlap
    labelmap = SliceLabelmap(segmentation, ids[0], volume, geometry)
    everything = np.ones(geometry.shape, bool)
    labelmap.write(everything)
    assert labelmap.read().all()
    assert np.array_equal(segment_masks.read_volume_mask(segmentation, ids[1], volume), shared)


def test_grids_that_do_not_follow_the_volume_are_refused(scene):
    volume, segmentation, ids, _first, _second, geometry = _setup(scene, "ras", "Red")
    for name, matrix in (("rotated", make_ijk_to_ras([[0.8, -0.6, 0], [0.6, 0.8, 0], [0, 0, 1]])),
                         ("coarser", make_ijk_to_ras(np.eye(3), (3.0, 3.0, 3.0)))):
        other = add_volume(scene, np.zeros((3, 3, 3), np.int16), matrix, name=name)
        segment_id = segmentation.GetSegmentation().AddEmptySegment(name, name)
        image = slicer.vtkOrientedImageData()
        image.SetGeometryFromImageToWorldMatrix(_vtk(other))
        image.SetExtent(0, 2, 0, 2, 0, 2)
        image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        image.GetPointData().GetScalars().Fill(1)
        logic = slicer.vtkSlicerSegmentationsModuleLogic
        assert logic.SetBinaryLabelmapToSegment(image, segmentation, segment_id, logic.MODE_REPLACE)
        with pytest.raises(SegmentError, match=("rotated" if name == "rotated" else "coarser")):
            SliceLabelmap(segmentation, segment_id, volume, geometry)


def _vtk(volume):
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return matrix


def test_missing_segment_is_a_clear_error(scene):
    volume, segmentation, _, _, _, geometry = _setup(scene)
    with pytest.raises(segment_masks.SegmentError, match="no segment"):
        SliceLabelmap(segmentation, "nope", volume, geometry)


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

    nodes_before = scene.GetNumberOfNodes()
    written = export.save_segment(segmentation, ids[0], str(tmp_path / "case"), volume)
    assert [p.rsplit("/", 1)[1] for p in written] == ["case.seg.nrrd", "case.nii.gz"]
    assert scene.GetNumberOfNodes() == nodes_before  # no labelmap, display or _ColorTable node left

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
