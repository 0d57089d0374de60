"""The panel on the whole segment (Work on: volume), as behaviour of the logic calls the panel
makes, on real MRML (slicer-core): what `IBISAgentLogic.actions` allows and says in 3D (the
remote refusal included), switching what to work on ending the other kind of episode, and
points placed in the Red, Yellow and Green views through the panel's own calls (start, propose,
place, flip, accept, auto-run, undo, finish) belonging to one 3D session; other segments and
the segment's history come back exactly."""

from __future__ import annotations

import numpy as np
import pytest

from slicer_agents import ScriptedPolicy, point
from slicer_scene import add_volume, make_ijk_to_ras, place_view_on_voxel
from test_slicer_panel_logic import enabled, reasons
from test_slicer_volume_session import SHAPE_KJI, local_logic, make_case, own_voxels, ras_of, same_voxels

from IBISAgentLib import AgentStepError, history_text, proposal_markups, segment_masks
from IBISAgentLib.actions import ACTIONS, COLOUR_3D, IN_3D, REMOTE_3D, SLICE, VOLUME

from session3d_doubles import BallTool  # noqa: E402  (on the path through test_slicer_volume_session)


def negative_twice():
    """A negative click at the slice's centre, then the same in the second view that confirms it."""
    return ScriptedPolicy([point(0.5, 0.5, positive=False), point(0.5, 0.5, positive=False)])


def segment_now(segmentation, segment_id, volume):
    return segment_masks.read_volume_mask(segmentation, segment_id, volume).astype(bool)


def test_actions_on_the_whole_segment(scene):
    volume, segmentation, ids, _, _ = make_case(scene, "lps")
    inputs = (volume, segmentation, ids[0])
    logic = local_logic(negative_twice(), BallTool(radius=2))
    states = logic.actions(*inputs, workOn=VOLUME)
    assert {"continue", "autoRun", "propagate", "save"} <= enabled(states)
    assert states["continue"].tooltip == IN_3D["continue"]
    assert logic.actions(*inputs, workOn=SLICE)["continue"].tooltip == ACTIONS["continue"][1]

    logic.startEpisode(*inputs, view="Red", workOn=VOLUME)
    assert logic.volumeSession is not None and logic.workedSlice is None
    now = reasons(logic, *inputs, workOn=VOLUME)
    assert now["skip"] == "No proposal on screen: press Next step."
    assert now["undo"] == "Nothing to undo in this episode."
    assert not now["next"] and not now["addPositive"] and now["flip"] == "No proposed point on screen."
    proposal = logic.proposeNext()
    assert proposal.voxel is not None and not proposal.voxel.positive
    states = logic.actions(*inputs, workOn=VOLUME)
    assert {"next", "accept", "skip", "flip", "finish", "addPositive", "addNegative"} <= enabled(states)
    assert states["next"].tooltip == IN_3D["next"]
    logic.acceptProposal()
    assert logic.actions(*inputs, workOn=VOLUME)["undo"].tooltip == ACTIONS["undo"][1]  # enabled, what it does
    busy = reasons(logic, *inputs, busy=True, workOn=VOLUME)
    assert busy["undo"] == busy["accept"] and busy["stop"] == ""
    logic.finish()
    assert reasons(logic, *inputs, workOn=VOLUME)["next"] == "Press Continue my mask first."

    logic.connect("http://127.0.0.1:9")  # an agent server: the whole segment is refused, saying why
    now = reasons(logic, *inputs, workOn=VOLUME)
    assert now["continue"] == now["autoRun"] == REMOTE_3D
    assert logic.actions(*inputs, workOn=VOLUME)["continue"].tooltip == REMOTE_3D
    assert not now["propagate"] and not reasons(logic, *inputs, workOn=SLICE)["continue"]  # Propagate stays
    with pytest.raises(ValueError, match="Local"):
        logic.startEpisode(*inputs, workOn=VOLUME)


def test_a_colour_volume_is_refused_on_the_whole_segment_only(scene):
    _, segmentation, ids, _, _ = make_case(scene, "ras")
    colour = add_volume(scene, np.zeros(SHAPE_KJI + (3,), np.uint8), make_ijk_to_ras(np.eye(3)), "colour", vector=True)
    logic = local_logic(ScriptedPolicy([]))
    assert reasons(logic, colour, segmentation, ids[0], workOn=VOLUME)["continue"] == COLOUR_3D
    assert not reasons(logic, colour, segmentation, ids[0], workOn=SLICE)["continue"]
    with pytest.raises(ValueError, match="grey volume"):
        logic.startEpisode(colour, segmentation, ids[0], workOn=VOLUME)


def test_switching_what_to_work_on_ends_the_other_kind_of_episode(scene):
    volume, segmentation, ids, _, _ = make_case(scene, "lps")
    inputs = (volume, segmentation, ids[0])
    logic = local_logic(negative_twice(), BallTool(radius=2))
    logic.startEpisode(*inputs, view="Red", workOn=VOLUME)
    logic.proposeNext()
    logic.acceptProposal()
    kept = segment_now(*inputs[1:], volume)
    logic.proposeNext()  # a proposal on screen when the choice changes
    assert logic.finishIfElsewhere(segmentation, ids[0], VOLUME) == "" and logic.volumeSession is not None
    assert logic.finishIfElsewhere(segmentation, ids[0], SLICE) == "Work on: slice was chosen."
    assert logic.volumeSession is None and logic.activeEpisode is None
    assert np.array_equal(segment_now(*inputs[1:], volume), kept)  # the mask stays
    proposals = scene.GetFirstNodeByName(proposal_markups.PROPOSALS_NODE_NAME)
    assert proposals is None or proposals.GetNumberOfControlPoints() == 0

    logic.startEpisode(*inputs, view="Red", workOn=SLICE)
    assert logic.finishIfElsewhere(segmentation, ids[0], SLICE) == "" and logic.workedSlice is not None
    assert logic.finishIfElsewhere(segmentation, ids[0], VOLUME) == "Work on: the whole segment (3D) was chosen."
    assert logic.workedSlice is None

    # Starting one kind ends the other, and a propagation's slice under review stays in 3D mode.
    logic.startEpisode(*inputs, view="Red", workOn=SLICE)
    logic.startEpisode(*inputs, view="Red", workOn=VOLUME)
    assert logic.workedSlice is None and logic.volumeSession is not None
    logic.startPropagation(*inputs, view="Red", direction="up", maxSlices=1, stepsPerSlice=0)
    assert logic.volumeSession is None and logic.workedSlice is not None
    assert logic.finishIfElsewhere(segmentation, ids[0], VOLUME) == "" and logic.workedSlice is not None
    assert logic.finishIfElsewhere(segmentation, ids[1], VOLUME) == "Another segment was chosen."


def test_points_in_all_three_views_through_the_panels_calls(scene):
    volume, segmentation, ids, _, start = make_case(scene, "lps")
    before = own_voxels(segmentation, ids)
    history = proposal_markups.read_history(segmentation, ids[0])
    logic = local_logic(negative_twice(), BallTool(radius=2))
    state = logic.startEpisode(volume, segmentation, ids[0], "Segment the ball.", view="Red", workOn=VOLUME)
    assert state["workOn"] == VOLUME and state["views"] == ["Red", "Yellow", "Green"]
    assert "voxels" in history_text.start(state)
    proposal = logic.proposeNext()
    assert "view, slice" in history_text.proposal(proposal)[0]
    # The user scrolls each view onto a voxel off the proposal's slice and places a point there
    # as the panel does (Add positive / Add negative: the proposal list in place mode).
    placed = {"Red": ((5, 20, 25), True), "Yellow": ((11, 16, 12), False), "Green": ((4, 10, 20), True)}
    for view, (kji, positive) in placed.items():
        place_view_on_voxel(scene, view, volume, kji[::-1])
        placement = logic.startPlacingPoint(positive)
        assert "Red, Yellow, Green" in history_text.placing(logic.state(), positive)
        placement.node.AddControlPoint(*ras_of(volume, kji))
        placement.end()
    clicks = logic.onScreenClicks()
    assert [(c.plane, c.voxel, c.positive) for c in clicks] == (
        [(proposal.plane, proposal.voxel.voxel, False)] + [(v, kji, p) for v, (kji, p) in placed.items()])
    assert logic.flipProposal() == 3  # the newest point (none is under the mouse)
    assert not logic.onScreenClicks()[3].positive

    step = logic.acceptProposal()
    expected = start.copy()
    k, j, i = np.indices(SHAPE_KJI)
    for click in logic.state()["steps"][-1]["clicks"]:
        ball = (k - click["k"]) ** 2 + (j - click["j"]) ** 2 + (i - click["i"]) ** 2 <= 4
        expected = expected | ball if click["positive"] else expected & ~ball
    assert np.array_equal(segment_now(segmentation, ids[0], volume), expected)
    assert [c["plane"] for c in logic.state()["steps"][-1]["clicks"]] == [proposal.plane, "Red", "Yellow", "Green"]
    assert "voxel(s) added" in history_text.step(step)
    assert same_voxels(own_voxels(segmentation, ids[1:]), before[1:])  # the other segment

    # Auto-run: the point on screen first, then the agent until it stops (it finds nothing more).
    place_view_on_voxel(scene, "Yellow", volume, (3, 5, 9))
    placement = logic.startPlacingPoint(True)
    placement.node.AddControlPoint(*ras_of(volume, (9, 5, 3)))
    placement.end()
    steps = []
    assert logic.runSteps(3, onStep=steps.append) == "terminated"
    assert len(steps) == 1 and steps[0].clicks[0].plane == "Yellow" and len(logic.state()["steps"]) == 2

    assert logic.undo() and logic.undo() and not logic.undo()
    assert same_voxels(own_voxels(segmentation, ids), before)
    assert proposal_markups.read_history(segmentation, ids[0]) == history
    result = logic.finish()
    assert result["workOn"] == VOLUME and "voxels in the segment" in history_text.finished(result)
    assert logic.activeEpisode is None


def test_removing_the_segment_ends_the_3d_session_and_tells_the_panel(scene):
    volume, segmentation, ids, _, _ = make_case(scene, "ras")
    logic = local_logic(ScriptedPolicy([]))
    ended = []
    logic.episodeEndedCallback = ended.append
    logic.startEpisode(volume, segmentation, ids[0], workOn=VOLUME)
    segmentation.GetSegmentation().RemoveSegment(ids[0])
    assert logic.volumeSession is None and len(ended) == 1 and "3D session" in ended[0]
    assert reasons(logic, volume, segmentation, ids[1], workOn=VOLUME)["next"] == "Press Continue my mask first."


def test_an_unreadable_answer_is_the_one_typed_error_and_changes_nothing(scene):
    volume, segmentation, ids, _, _ = make_case(scene, "ras")
    before = own_voxels(segmentation, ids)
    logic = local_logic(ScriptedPolicy(["not the grammar"]))
    logic.startEpisode(volume, segmentation, ids[0], workOn=VOLUME)
    with pytest.raises(AgentStepError) as raised:
        logic.proposeNext()
    assert raised.value.kind == "invalid-output" and "not changed" in str(raised.value)
    assert logic.state()["stop_reason"] == "unparseable" and same_voxels(own_voxels(segmentation, ids), before)
