"""The 3D session in Slicer (real MRML from slicer-core): points in the Red, Yellow and Green
views belong to one session on the whole segment; proposals appear on their slice and the view
moves there; undo is bit-exact in the segment's own grid; other segments, shared layers and the
segment's geometry are left alone; any volume orientation."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import slicer
import vtk
from vtk.util.numpy_support import vtk_to_numpy

from slicer_agents import ScriptedPolicy, point
from slicer_scene import (
    ORIENTATIONS,
    add_bright_volume,
    add_segmentation,
    ball_mask,
    place_view_on_voxel,
    set_fine_segment,
)

from IBISAgentLib import proposal_markups, segment_masks
from IBISAgentLib.agent_sessions import AgentStepError
from IBISAgentLib.logic import IBISAgentLogic
from IBISAgentLib.slice_geometry import slice_geometry, vtk_matrix_to_numpy
from ibisagent.actions import TERMINATE, Action, format_response
from ibisagent.metrics import dice

VOLUME_TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "volume")
if VOLUME_TESTS not in sys.path:
    sys.path.insert(0, VOLUME_TESTS)

from session3d_doubles import BallTool  # noqa: E402

SHAPE_KJI = (16, 28, 32)
CENTRE_KJI = (8, 14, 16)


def make_case(scene, orientation="flipped-permuted", shared=False):
    """A bright ball in noise; "target" holds the ball with a leak on array slice k = 8,
    "other" a block beside it (in the same labelmap layer when ``shared``)."""
    truth = ball_mask(SHAPE_KJI, CENTRE_KJI, 6.0)
    volume = add_bright_volume(scene, truth, orientation, np.random.default_rng(7))
    segmentation, ids = add_segmentation(scene, volume, ("target", "other"))
    start = truth.copy()
    start[8, 2:9, 10:23] = True  # a leak beside the ball on one slice
    other = np.zeros(SHAPE_KJI, np.uint8)
    other[2:6, 14:19, 2:7] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(start.astype(np.uint8), segmentation, ids[0], volume)
    slicer.util.updateSegmentBinaryLabelmapFromArray(other, segmentation, ids[1], volume)
    if shared:
        segmentation.GetSegmentation().CollapseBinaryLabelmaps(False)
    for view in ("Red", "Yellow", "Green"):
        place_view_on_voxel(scene, view, volume, CENTRE_KJI[::-1])
    return volume, segmentation, ids, truth, start


def own_voxels(segmentation, segment_ids):
    """Every segment's own labelmap (array, extent, grid matrix), as stored."""
    found = []
    for segment_id in segment_ids:
        image = segmentation.GetBinaryLabelmapInternalRepresentation(segment_id)
        matrix = vtk.vtkMatrix4x4()
        image.GetImageToWorldMatrix(matrix)
        data = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(tuple(reversed(image.GetDimensions())))
        label = segmentation.GetSegmentation().GetSegment(segment_id).GetLabelValue()
        found.append((data == label, image.GetExtent(), vtk_matrix_to_numpy(matrix)))
    return found


def same_voxels(a, b) -> bool:
    """Two `own_voxels` results hold the same segment voxels in the same grids (the allocated
    extent may differ; voxels outside it are empty)."""
    for (data_a, extent_a, matrix_a), (data_b, extent_b, matrix_b) in zip(a, b):
        if not np.allclose(matrix_a, matrix_b):
            return False
        low = [min(extent_a[2 * n], extent_b[2 * n]) for n in range(3)]
        high = [max(extent_a[2 * n + 1], extent_b[2 * n + 1]) for n in range(3)]
        full = []
        for data, extent in ((data_a, extent_a), (data_b, extent_b)):
            canvas = np.zeros(tuple(high[n] - low[n] + 1 for n in (2, 1, 0)), bool)
            canvas[extent[4] - low[2]:extent[5] - low[2] + 1, extent[2] - low[1]:extent[3] - low[1] + 1,
                   extent[0] - low[0]:extent[1] - low[0] + 1] = data
            full.append(canvas)
        if not np.array_equal(*full):
            return False
    return True


def local_logic(policy=None, tool=None):
    logic = IBISAgentLogic(log=lambda message: None)
    logic.useLocalEngine(policy or ScriptedPolicy([]), "graphcut")
    logic.useVolumeTool(tool or BallTool(radius=1))
    return logic


def ras_of(volume, kji):
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return matrix.MultiplyPoint([float(kji[2]), float(kji[1]), float(kji[0]), 1.0])[:3]


def test_points_in_all_three_views_belong_to_one_session_and_undo_is_exact(scene):
    volume, segmentation, ids, _, start = make_case(scene, "flipped-permuted", shared=True)
    before = own_voxels(segmentation, ids)
    history = proposal_markups.read_history(segmentation, ids[0])
    logic = local_logic()
    logic.startVolumeSession(volume, segmentation, ids[0], "Segment the ball.", view="Red")
    points = {"Red": (8, 3, 5), "Yellow": (11, 16, 12), "Green": (4, 10, 20)}  # k, j, i
    proposals = logic.volumeSession.markups.proposals
    for view, kji in points.items():
        place_view_on_voxel(scene, view, volume, kji[::-1])  # the user scrolls that view onto the voxel
        proposals.AddControlPoint(*ras_of(volume, kji), "+")
        proposals.SetNthControlPointSelected(proposals.GetNumberOfControlPoints() - 1, True)
    clicks = logic.onScreenClicks()
    assert [(c.plane, c.voxel) for c in clicks] == [(view, kji) for view, kji in points.items()]
    for click in clicks:  # each on the slice its view shows
        assert slice_geometry(volume, click.plane).slice_index == click.index
    step = logic.acceptProposal()
    mask = segment_masks.read_volume_mask(segmentation, ids[0], volume).astype(bool)
    expected = start.copy()
    for kji in points.values():
        k, j, i = np.indices(SHAPE_KJI)
        expected |= (k - kji[0]) ** 2 + (j - kji[1]) ** 2 + (i - kji[2]) ** 2 <= 1
    assert np.array_equal(mask, expected) and step.added == int((expected & ~start).sum())
    assert same_voxels(own_voxels(segmentation, ids[1:]), before[1:])  # the other segment, same layer
    entry = proposal_markups.read_history(segmentation, ids[0])[-1]
    assert entry["volume"] and [c["plane"] for c in entry["clicks"]] == list(points)
    assert logic.volumeSession.markups.accepted.GetNumberOfControlPoints() == 3
    second = logic.acceptProposal([clicks[0].flipped()])
    assert second.removed > 0
    assert logic.undo() and logic.undo() and not logic.undo()
    assert same_voxels(own_voxels(segmentation, ids), before)
    assert proposal_markups.read_history(segmentation, ids[0]) == history


@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
def test_a_proposal_appears_on_its_slice_and_the_view_moves_there(scene, orientation):
    volume, segmentation, ids, _, _ = make_case(scene, orientation)
    logic = local_logic(ScriptedPolicy([point(0.5, 0.5)]))
    logic.startVolumeSession(volume, segmentation, ids[0], view="Green", confirm=False)
    place_view_on_voxel(scene, "Green", volume, (0, 0, 0))  # the user looks elsewhere meanwhile
    proposal = logic.proposeNext()
    assert proposal.plane in ("Red", "Yellow", "Green")
    assert slice_geometry(volume, proposal.plane).slice_index == proposal.index  # the view moved there
    points = logic.volumeSession.markups.proposals
    assert points.GetNumberOfControlPoints() == 1
    [click] = logic.onScreenClicks()
    assert (click.plane, click.index, click.voxel, click.origin) == (proposal.plane, proposal.index,
                                                                     proposal.voxel.voxel, "agent")
    assert logic.flipProposal() == 0
    assert logic.onScreenClicks()[0].origin == "user-moved"


def test_the_weight_free_agent_removes_a_leak_on_one_slice(scene):
    volume, segmentation, ids, truth, start = make_case(scene, "lps")
    before_other = own_voxels(segmentation, ids[1:])
    logic = IBISAgentLogic(log=lambda message: None)
    logic.useLocalEngine("heuristic", "graphcut")
    logic.useVolumeTool("slice2d")
    result = logic.continueVolume(volume, segmentation, ids[0], "Segment the ball.", view="Red", maxSteps=4)
    after = segment_masks.read_volume_mask(segmentation, ids[0], volume).astype(bool)
    assert len(result["steps"]) >= 1 and dice(after, truth) > dice(start, truth)
    first = result["proposals"][0]["voxel"]
    assert first["k"] == 8 and not first["positive"]
    assert np.array_equal(after[:8], start[:8]) and np.array_equal(after[9:], start[9:])  # slice2d: that slice only
    assert same_voxels(own_voxels(segmentation, ids[1:]), before_other)
    assert logic.volumeSession is None and result["proposals"]


def test_with_the_default_3d_tool_the_agent_removes_the_leak_and_keeps_the_ball(scene):
    """From the user's mask the 3D graph cut changes only what a click of that sign reaches through
    changed voxels: the negative click on the leak removes the leak (on its slice) and leaves the
    ball's boundary on the other slices as the user drew it, so the change needs no second view."""
    volume, segmentation, ids, truth, start = make_case(scene, "lps")
    before_other = own_voxels(segmentation, ids[1:])
    logic = IBISAgentLogic(log=lambda message: None)
    logic.useLocalEngine("heuristic", "graphcut")
    result = logic.continueVolume(volume, segmentation, ids[0], "Segment the ball.", view="Red", maxSteps=4)
    after = segment_masks.read_volume_mask(segmentation, ids[0], volume).astype(bool)
    changed = after ^ start
    assert result["steps"] and dice(after, truth) > dice(start, truth)
    assert not (after & ~start).any()  # negative clicks only remove
    assert changed[8].any() and not changed[:8].any() and not changed[9:].any()  # the leak's slice only
    assert same_voxels(own_voxels(segmentation, ids[1:]), before_other)
    assert logic.volumeSession is None

def test_a_hand_edit_is_one_undo_entry_and_failures_leave_the_segment(scene):
    volume, segmentation, ids, _, start = make_case(scene, "ras")
    before = own_voxels(segmentation, ids)
    logic = local_logic(ScriptedPolicy([point(0.5, 0.5), format_response("x", Action(TERMINATE), "done")]))
    logic.startVolumeSession(volume, segmentation, ids[0])
    edited = start.copy()
    edited[3:6, 3:6, 3:6] = True
    slicer.util.updateSegmentBinaryLabelmapFromArray(edited.astype(np.uint8), segmentation, ids[0], volume)
    logic.proposeNext()  # notices the hand edit first
    assert np.array_equal(logic.volumeSession.session.mask, edited)
    assert logic.undo()  # the hand edit
    assert np.array_equal(segment_masks.read_volume_mask(segmentation, ids[0], volume).astype(bool), start)
    with pytest.raises(ValueError, match="no click"):
        logic.acceptProposal([])
    assert same_voxels(own_voxels(segmentation, ids), before)
    state = logic.finish()
    assert state["mask_voxels"] == int(start.sum()) and logic.volumeSession is None


def test_a_finer_segment_keeps_its_grid_and_comes_back_exactly(scene):
    volume, segmentation, ids, _, _ = make_case(scene, "permuted")
    fine, _ = set_fine_segment(segmentation, ids[0], volume, seed=2)
    before = own_voxels(segmentation, ids)
    logic = local_logic(tool=BallTool(radius=2))
    logic.startVolumeSession(volume, segmentation, ids[0])
    from ibisagent.segmenters.volume_base import VoxelClick

    logic.acceptProposal([VoxelClick(8, 14, 16, True, "user")])
    logic.acceptProposal([VoxelClick(3, 4, 5, False, "user")])
    after = own_voxels(segmentation, ids)
    assert np.allclose(after[0][2], fine)  # still the segment's own, finer grid
    while logic.undo():
        pass
    assert same_voxels(own_voxels(segmentation, ids), before)


def test_3d_sessions_need_the_local_engine(scene):
    volume, segmentation, ids, _, _ = make_case(scene, "ras")
    logic = local_logic()
    logic.connect("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="Local"):
        logic.startVolumeSession(volume, segmentation, ids[0])


def test_the_3d_tool_is_built_by_the_engine_around_the_logics_one_2d_tool(scene):
    from ibisagent.segmenters import DEFAULT_VOLUME_SEGMENTER

    volume, segmentation, ids, _, _ = make_case(scene, "ras")
    logic = IBISAgentLogic(log=lambda message: None)
    logic.useLocalEngine(ScriptedPolicy([]), "graphcut")
    two_d = logic.localEngine().segmenter
    for name, options, built in ((None, {}, lambda tool: tool.name == DEFAULT_VOLUME_SEGMENTER),
                                 ("slice2d", {}, lambda tool: tool.tool is two_d),
                                 ("propagation3d", {}, lambda tool: tool.tool is two_d),
                                 ("graphcut3d", {"smoothness": 4.0}, lambda tool: tool.smoothness == 4.0)):
        logic.useVolumeTool(name, options)
        logic.startVolumeSession(volume, segmentation, ids[0])
        assert built(logic.volumeSession.session.segmenter)
        logic.finish()
    for name, options, message in (("graphcut3d", {"no_such": 1}, "does not take that option"),
                                   ("slice2d", {"no_such": 1}, "already built"),
                                   ("nothing3d", {}, "Unknown 3D segmentation tool")):
        logic.useVolumeTool(name, options)
        with pytest.raises(AgentStepError, match=message):
            logic.startVolumeSession(volume, segmentation, ids[0])
        assert logic.volumeSession is None


def test_an_unreadable_answer_in_3d_is_an_invalid_output_error(scene):
    volume, segmentation, ids, _, start = make_case(scene, "ras")
    logic = local_logic(ScriptedPolicy(["no grammar here"]))
    logic.startVolumeSession(volume, segmentation, ids[0])
    with pytest.raises(AgentStepError) as raised:
        logic.proposeNext()
    assert raised.value.kind == "invalid-output" and raised.value.cause.proposal is not None
    assert np.array_equal(segment_masks.read_volume_mask(segmentation, ids[0], volume).astype(bool), start)
    logic.finish()
