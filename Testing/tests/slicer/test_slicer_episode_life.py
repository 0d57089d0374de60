"""The logic over a scene that changes under it: nodes, segments and the whole scene going
away; undo across hand edits read from the one session; decide callbacks that skip and stop;
the proposal list given back to the user after placing; a finer segment kept through a run."""

from __future__ import annotations

import numpy as np
import pytest
import slicer

from slicer_agents import DiskSegmenter, ScriptedPolicy, point
from slicer_scene import own_labelmap, set_fine_segment
from test_slicer_logic import local_logic, make_case, snapshot

from IBISAgentLib import proposal_markups, segment_masks
from IBISAgentLib.logic import IBISAgentLogic
from IBISAgentLib.slice_labelmap import SliceLabelmap
from ibisagent.clicks import USER, Click
from ibisagent.session import STOP_USER


def started(scene, texts=(), view="Red", orientation="lps"):
    volume, segmentation, ids, truth = make_case(scene, orientation, view)
    closed = []
    logic = local_logic(ScriptedPolicy(list(texts) or [point(0.5, 0.5), point(0.3, 0.3), point(0.7, 0.6)]))
    logic.startAgentCall = lambda function: closed.append(function) or function()
    logic.startEpisode(volume, segmentation, ids[0], view=view)
    return logic, volume, segmentation, ids, closed


@pytest.mark.parametrize("how", ["close scene", "remove segmentation", "remove volume", "remove segment"])
def test_the_episode_ends_when_its_nodes_or_segment_go_away(scene, how):
    logic, volume, segmentation, ids, closed = started(scene)
    logic.proposeNext()
    logic.acceptProposal()
    if how == "close scene":
        scene.Clear(0)
    elif how == "remove segmentation":
        scene.RemoveNode(segmentation)
    elif how == "remove volume":
        scene.RemoveNode(volume)
    else:
        segmentation.GetSegmentation().RemoveSegment(ids[0])
    assert logic.workedSlice is None and len(closed) == 1  # session closed, without waiting
    with pytest.raises(RuntimeError, match="Continue my mask"):
        logic.proposeNext()
    if how == "remove segment":  # a fresh start on another segment just works
        state = logic.startEpisode(volume, segmentation, ids[1], view="Red")
        assert state["steps"] == [] and logic.workedSlice.segment_id == ids[1]
        assert logic.proposeNext().click is not None


def test_a_removed_segment_is_a_clear_error_on_start_and_nothing_stale_is_read(scene):
    logic, volume, segmentation, ids, _closed = started(scene)
    segmentation.GetSegmentation().RemoveSegment(ids[0])
    for _ in range(2):  # every later Continue says what to do, none crashes on the old episode
        with pytest.raises(segment_masks.SegmentError, match="no segment with ID"):
            logic.startEpisode(volume, segmentation, ids[0], view="Red")
    scene.RemoveNode(segmentation)
    with pytest.raises(segment_masks.SegmentError, match="no longer in the scene"):
        logic.startEpisode(volume, segmentation, ids[1], view="Red")


def test_a_stale_episode_missed_by_the_observers_is_dropped_not_read(scene):
    logic, volume, segmentation, ids, closed = started(scene)
    logic.workedSlice.unwatch()  # as if the removal had not been seen
    scene.RemoveNode(segmentation)
    with pytest.raises(segment_masks.SegmentError, match="removed"):
        logic.state()
    assert logic.workedSlice is None and len(closed) == 1


def test_undo_after_a_hand_edit_walks_back_through_the_one_session(scene):
    """Step, hand edit, step, then Undo three times: each undo changes the slice, and can_undo
    comes from the session, so it is False exactly when step 1 is undone too."""
    logic, volume, segmentation, ids, _closed = started(scene)
    geometry = logic.workedSlice.geometry
    hand = SliceLabelmap(segmentation, ids[0], volume, geometry)  # the Segment Editor's view of the slice
    states = [snapshot(segmentation, ids, volume)]
    logic.proposeNext()
    logic.acceptProposal()
    states.append(snapshot(segmentation, ids, volume))
    edited = hand.read()
    edited[-4:, -4:] = True
    hand.write(edited)
    states.append(snapshot(segmentation, ids, volume))
    assert logic.state()["can_undo"]
    logic.proposeNext()  # the hand edit is sent first, as one undo entry
    logic.acceptProposal()
    assert len(logic.state()["steps"]) == 2
    for expected in reversed(states):
        assert logic.state()["can_undo"]
        assert logic.undo()
        assert all(np.array_equal(a, b) for a, b in zip(snapshot(segmentation, ids, volume), expected))
    assert not logic.state()["can_undo"] and not logic.undo()
    assert logic.state()["steps"] == [] and proposal_markups.read_history(segmentation, ids[0]) == []


def test_undo_right_after_a_hand_edit_reverts_the_hand_edit(scene):
    logic, volume, segmentation, ids, _closed = started(scene)
    before = snapshot(segmentation, ids, volume)
    hand = SliceLabelmap(segmentation, ids[0], volume, logic.workedSlice.geometry)
    edited = hand.read()
    edited[:3, :3] = ~edited[:3, :3]
    hand.write(edited)
    assert logic.state()["can_undo"] and logic.undo()
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(segmentation, ids, volume), before))


def test_continue_mask_decide_can_skip_override_and_stop(scene):
    volume, segmentation, ids, _truth = make_case(scene, "lps", "Red")
    texts = [point(0.2, 0.2), point(0.4, 0.4), point(0.6, 0.6), point(0.8, 0.8), point(0.5, 0.1)]
    seen = []

    def decide(proposal):
        seen.append(proposal)
        if len(seen) == 1:
            return []  # skip
        if len(seen) == 2:
            return [Click(proposal.click.x, proposal.click.y, False, "user-moved")]  # flip it
        if len(seen) == 3:
            return [proposal.click, Click(1, 1, True, USER)]  # accept plus one of mine
        return None  # stop

    result = local_logic(ScriptedPolicy(texts)).continueMask(volume, segmentation, ids[0], view="Red", decide=decide)
    assert result["stop_reason"] == STOP_USER and len(seen) == 4
    assert [s["decision"] for s in result["steps"]] == ["edited", "edited"]
    assert [len(s["clicks"]) for s in result["steps"]] == [1, 2] and not result["steps"][0]["clicks"][0]["positive"]
    assert len(result["proposals"]) == 4
    assert len(proposal_markups.read_history(segmentation, ids[0])) == 2


def test_run_steps_accepts_what_is_on_screen_and_stops_on_request(scene):
    logic, volume, segmentation, ids, _closed = started(scene, [point(0.1 * k, 0.5) for k in range(1, 9)])
    assert logic.runSteps(2) == "step-limit" and len(logic.workedSlice.session.steps) == 2
    asked = []

    def stop_now(proposal):
        asked.append(proposal)
        return None

    stop = logic.runSteps(5, decide=stop_now)
    assert stop == STOP_USER and len(asked) == 1 and len(logic.workedSlice.session.steps) == 2
    assert logic.state()["proposal"] is not None  # the proposal it stopped on is still on screen


def test_placing_points_gives_the_users_active_list_back(scene):
    logic, volume, segmentation, ids, _closed = started(scene)
    mine = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "my points")
    selection = scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
    selection.SetReferenceActivePlaceNodeClassName(mine.GetClassName())
    selection.SetReferenceActivePlaceNodeID(mine.GetID())
    target = proposal_markups.PlacementTarget(logic.workedSlice.markups.proposals)
    assert selection.GetActivePlaceNodeID() == logic.workedSlice.markups.proposals.GetID()
    target.restore()
    target.restore()
    assert selection.GetActivePlaceNodeID() == mine.GetID()


def test_a_finer_segment_keeps_its_grid_through_a_whole_run(scene):
    volume, segmentation, ids, _truth = make_case(scene, "lps", "Green")
    _, original = set_fine_segment(segmentation, ids[0], volume, seed=9, above=0.7)
    shape = original.shape
    logic = local_logic(ScriptedPolicy([point(0.5, 0.5), point(0.2, 0.3)]), DiskSegmenter())
    logic.startEpisode(volume, segmentation, ids[0], view="Green")
    geometry = logic.workedSlice.geometry
    logic.runSteps(2)
    after, _ = own_labelmap(segmentation, ids[0], shape)
    kept = np.ones(slicer.util.arrayFromVolume(volume).shape, bool)
    kept[geometry.kji_index()] = False
    kept = kept.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    assert np.array_equal(after[kept], original[kept])  # every other slice keeps its fine detail
    assert logic.undo() and logic.undo()
    back, _ = own_labelmap(segmentation, ids[0], shape)
    assert np.array_equal(back, original)  # undone exactly, in the segment's own grid
    logic.finish()


def test_finish_closes_the_session_through_start_agent_call(scene):
    logic, volume, segmentation, ids, closed = started(scene)
    logic.finish()
    assert len(closed) == 1 and logic.workedSlice is None
    with pytest.raises(RuntimeError, match="No episode is running"):
        logic.state()


def test_empty_url_never_means_the_local_engine():
    logic = IBISAgentLogic()
    with pytest.raises(ValueError, match="Local \\(no server\\)"):
        logic.connect("")
    assert logic.serverUrl is None  # still the local engine it was set to, by choice
