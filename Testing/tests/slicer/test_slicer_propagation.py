"""Propagation through the slices in Slicer (real MRML from slicer-core): the console's
`logic.propagate` (run through, cancel, undo, failures, a real agent server) and the review
slice by slice the panel drives; any view, any volume orientation."""

from __future__ import annotations

import numpy as np
import pytest
import slicer

from slicer_agents import DiskSegmenter, ScriptedPolicy, point
from slicer_scene import ORIENTATIONS, add_bright_volume, add_segmentation, ball_mask, place_view_on_voxel

from IBISAgentLib import AgentStepError, proposal_markups, segment_masks
from IBISAgentLib.logic import IBISAgentLogic
from IBISAgentLib.propagation import display_stack, offset_step
from IBISAgentLib.slice_geometry import slice_geometry
from ibisagent.actions import TERMINATE, Action, format_response
from ibisagent.metrics import dice

SHAPE_KJI = (18, 22, 26)
CENTRE_KJI = (9, 11, 13)


def make_case(scene, orientation="flipped-permuted", view="Red"):
    """A bright ball in noise, a segmentation whose target holds the ball's true mask on the
    view's slice through the centre only, and a second segment. Returns (volume, segmentation,
    ids, truth_kji)."""
    truth = ball_mask(SHAPE_KJI, CENTRE_KJI, 7.5)
    rng = np.random.default_rng(5)
    volume = add_bright_volume(scene, truth, orientation, rng)
    segmentation, ids = add_segmentation(scene, volume, ("target", "other"))
    place_view_on_voxel(scene, view, volume, CENTRE_KJI[::-1])
    geometry = slice_geometry(volume, view)
    start = np.zeros(SHAPE_KJI, np.uint8)
    start[geometry.kji_index()] = geometry.extract(truth)
    slicer.util.updateSegmentBinaryLabelmapFromArray(start, segmentation, ids[0], volume)
    other = (rng.random(SHAPE_KJI) > 0.8).astype(np.uint8)
    slicer.util.updateSegmentBinaryLabelmapFromArray(other, segmentation, ids[1], volume)
    return volume, segmentation, ids, truth


def snapshot(segmentation, ids, volume):
    return [segment_masks.read_volume_mask(segmentation, i, volume) for i in ids]


def done(answer="done"):
    return format_response("scripted", Action(TERMINATE), answer)


def local_logic(policy=None, tool=None):
    logic = IBISAgentLogic(log=lambda message: None)
    logic.useLocalEngine(policy or ScriptedPolicy([]), tool or DiskSegmenter())
    return logic


def slice_mask(segmentation, segment_id, volume, geometry):
    """The segment on ``geometry``'s slice, read back through the whole-segment export."""
    return geometry.extract(segment_masks.read_volume_mask(segmentation, segment_id, volume)).astype(bool)


@pytest.mark.parametrize("view", ["Red", "Yellow", "Green"])
@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
def test_display_stack_is_every_slice_the_geometry_extracts(scene, view, orientation):
    volume, _, _, truth = make_case(scene, orientation, view)
    geometry = slice_geometry(volume, view)
    array = slicer.util.arrayFromVolume(volume)
    stack = display_stack(array, geometry)
    count = geometry.dimensions[geometry.normal_axis]
    assert stack.shape[0] == count
    for index in (0, geometry.slice_index, count - 1):
        other = type(geometry)(**{**geometry.__dict__, "slice_index": index})
        assert np.array_equal(stack[index], other.extract(array))


@pytest.mark.parametrize("view", ["Red", "Yellow", "Green"])
@pytest.mark.parametrize("orientation", ["lps", "flipped-permuted"])
def test_propagate_fills_the_ball_and_changes_nothing_else(scene, view, orientation):
    volume, segmentation, ids, truth = make_case(scene, orientation, view)
    before = snapshot(segmentation, ids, volume)
    geometry = slice_geometry(volume, view)
    logic = local_logic()
    seen = []
    result = logic.propagate(volume, segmentation, ids[0], view=view, stepsPerSlice=0, onSlice=seen.append)
    after = snapshot(segmentation, ids, volume)
    assert np.array_equal(after[1], before[1])  # the other segment is untouched
    assert [r["index"] for r in seen] == [r["index"] for r in result["slices"]]
    written = set(result["written"])
    assert written and geometry.slice_index not in written
    index_of = np.indices(SHAPE_KJI)[2 - geometry.normal_axis]  # the normal axis' voxel index
    changed = np.isin(index_of, sorted(written))
    assert np.array_equal(after[0][~changed], before[0][~changed])  # only written slices changed
    assert dice(after[0].astype(bool), truth) > 0.85
    assert {e["reason"] for e in result["ends"]} <= {"faded", "vanished", "range-end"}
    assert result["cancelled"] is False


def test_directions_follow_the_view_and_the_range_limits_the_slices(scene):
    volume, segmentation, ids, truth = make_case(scene, "flipped-permuted", "Red")
    geometry = slice_geometry(volume, "Red")
    step = offset_step(geometry, scene)
    logic = local_logic()
    start = geometry.slice_index
    result = logic.propagate(volume, segmentation, ids[0], view="Red", direction="up", stepsPerSlice=0, maxSlices=2)
    assert result["written"] == [start + step, start + 2 * step]  # "up": the way the view's offset grows
    assert logic.undoPropagation()
    low, high = sorted((start - 3, start + 3))
    result = logic.propagate(volume, segmentation, ids[0], view="Red", first=low + 1, last=high - 1, stepsPerSlice=0)
    assert sorted(result["written"]) == [i for i in range(low + 1, high) if i != start]
    assert all(e["reason"] == "range-end" for e in result["ends"])


def test_one_propagation_is_one_undo_bit_for_bit(scene):
    volume, segmentation, ids, _ = make_case(scene)
    before = snapshot(segmentation, ids, volume)
    history = proposal_markups.read_history(segmentation, ids[0])
    geometry = slice_geometry(volume, "Red")
    policy = ScriptedPolicy([point(0.5, 0.5), done()] * 40)
    logic = local_logic(policy)
    result = logic.propagate(volume, segmentation, ids[0], view="Red", stepsPerSlice=1)
    assert any(r["steps"] for r in result["slices"])
    after_history = proposal_markups.read_history(segmentation, ids[0])
    assert len(after_history) == len(history) + sum(len(r["steps"]) for r in result["slices"] if r["written"])
    for entry in after_history:  # each step's clicks sit on their own slice
        assert entry["slice"]["slice_index"] in result["written"]
        assert all(c["ijk"][geometry.normal_axis] == entry["slice"]["slice_index"] for c in entry["clicks"])
    assert logic.undoPropagation()
    for now, then in zip(snapshot(segmentation, ids, volume), before):
        assert np.array_equal(now, then)
    assert proposal_markups.read_history(segmentation, ids[0]) == history
    assert not logic.undoPropagation()


def test_cancel_keeps_the_slices_done_and_a_failure_changes_nothing(scene):
    volume, segmentation, ids, _ = make_case(scene)
    before = snapshot(segmentation, ids, volume)
    logic = local_logic()
    seen = []
    result = logic.propagate(volume, segmentation, ids[0], stepsPerSlice=0, onSlice=seen.append,
                             shouldCancel=lambda: len(seen) >= 2)
    assert result["cancelled"] and len(result["written"]) == 2
    assert all(e["reason"] == "cancelled" for e in result["ends"])
    assert logic.undoPropagation()
    tool = DiskSegmenter()
    tool.fail_on_call = 3  # the third click of the run fails
    failing = local_logic(ScriptedPolicy([point(0.5, 0.5), done()] * 40), tool)
    with pytest.raises(AgentStepError, match="segment was not changed"):
        failing.propagate(volume, segmentation, ids[0], stepsPerSlice=1)
    for now, then in zip(snapshot(segmentation, ids, volume), before):
        assert np.array_equal(now, then)


def test_bad_requests_are_clear_errors(scene):
    volume, segmentation, ids, _ = make_case(scene)
    logic = local_logic()
    empty = segmentation.GetSegmentation().AddEmptySegment("empty", "empty")
    with pytest.raises(ValueError, match="empty on slice"):
        logic.propagate(volume, segmentation, empty)
    with pytest.raises(ValueError, match="Unknown direction"):
        logic.propagate(volume, segmentation, ids[0], direction="sideways")
    with pytest.raises(ValueError, match="not inside"):
        logic.propagate(volume, segmentation, ids[0], first=0, last=999)
    with pytest.raises(RuntimeError, match="No propagation is under review"):
        logic.nextPropagatedSlice()


def test_review_each_slice_with_steps_hand_edits_stop_and_undo(scene):
    volume, segmentation, ids, truth = make_case(scene, "lps", "Green")
    before = snapshot(segmentation, ids, volume)
    logic = local_logic(ScriptedPolicy([point(0.1, 0.1)] * 200))
    opened = logic.startPropagation(volume, segmentation, ids[0], view="Green", direction="both", stepsPerSlice=3)
    worked = logic.workedSlice
    first = opened["slice"]
    assert worked is not None and worked.geometry.slice_index == first
    carried = worked.labelmap.read()
    assert carried.any() and np.array_equal(carried, worked.session.mask)  # the carried mask is in the segment
    proposal = logic.proposeNext()
    assert logic.workedSlice.markups.proposals.GetNumberOfControlPoints() == 1
    logic.acceptProposal()
    assert worked.labelmap.read()[proposal.click.y, proposal.click.x]
    assert logic.undo() and np.array_equal(worked.labelmap.read(), carried)  # each slice undoes on its own
    from scipy import ndimage

    edited = ndimage.binary_erosion(carried)
    worked.labelmap.write(edited)  # a hand edit in the Segment Editor (the user tightens the outline)
    nxt = logic.nextPropagatedSlice()
    assert nxt["finished"]["index"] == first and nxt["finished"]["written"]
    run = logic.propagation
    assert np.array_equal(slice_mask(segmentation, ids[0], volume, run.geometry_of(first)), edited)
    second = nxt["slice"]
    second_geometry = run.geometry_of(second)
    assert logic.workedSlice.geometry == second_geometry
    assert slice_mask(segmentation, ids[0], volume, second_geometry).any()  # carried from the edited slice
    stopped = logic.stopPropagationHere()  # the target ends here: the slice goes back as it was
    assert np.array_equal(slice_mask(segmentation, ids[0], volume, second_geometry),
                          second_geometry.extract(before[0]).astype(bool))
    assert stopped is None or stopped["slice"] != second
    summary = logic.finishPropagation()
    assert logic.propagation is None and logic.workedSlice is None
    assert first in summary["written"] and second not in summary["written"]
    assert logic.undoPropagation()
    for now, then in zip(snapshot(segmentation, ids, volume), before):
        assert np.array_equal(now, then)


def test_propagation_through_a_real_agent_server(scene, server):
    from slicer_server import remote_logic

    volume, segmentation, ids, truth = make_case(scene)
    server.policy.inner = ScriptedPolicy([done()] * 100)
    logic = remote_logic(server)
    result = logic.propagate(volume, segmentation, ids[0], view="Red", stepsPerSlice=1)
    final = segment_masks.read_volume_mask(segmentation, ids[0], volume).astype(bool)
    assert len(result["written"]) >= 6 and dice(final, truth) > 0.85
    assert all(r["stop_reason"] == "terminated" for r in result["slices"] if r["written"])
    with pytest.raises(ValueError, match="needs the segmentation tool"):
        logic.propagate(volume, segmentation, ids[0], propagation="prior")


def test_review_reaching_a_faded_slice_says_so_and_ends_there_unless_changed(scene):
    """Beyond the ball the carried start no longer stands out: the panel is told, the segment
    shows the faded start for the user to correct, and Next slice without a change ends that
    direction leaving the slice as it was."""
    volume, segmentation, ids, truth = make_case(scene, "lps", "Red")
    before = snapshot(segmentation, ids, volume)
    logic = local_logic(ScriptedPolicy([done()] * 200))
    step = logic.startPropagation(volume, segmentation, ids[0], view="Red", direction="up", stepsPerSlice=1)
    seen = []
    while step is not None:
        shown = logic.workedSlice.labelmap.read()
        seen.append((step["slice"], step["faded"], bool(shown.any())))
        step = logic.nextPropagatedSlice()
    assert seen[-1][1] and seen[-1][2]  # the last slice faded, and its carried start was shown
    assert not any(entry[1] for entry in seen[:-1])
    summary = logic.lastPropagation.summary()
    last = summary["slices"][-1]
    assert last["index"] == seen[-1][0] and last["end"] == "faded" and last["faded"] and not last["written"]
    assert [e["reason"] for e in summary["ends"]] == ["faded"]
    geometry = slice_geometry(volume, "Red")
    index_of = np.indices(SHAPE_KJI)[2 - geometry.normal_axis]
    untouched = ~np.isin(index_of, summary["written"])
    after = snapshot(segmentation, ids, volume)
    assert np.array_equal(after[0][untouched], before[0][untouched])  # the faded slice went back as it was
