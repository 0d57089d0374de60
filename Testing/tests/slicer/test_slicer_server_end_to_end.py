"""IBISAgentLogic against a real agent server on 127.0.0.1 (random free port), through the
real torch-free client: the same episodes, edits, undo and failures as with the local engine."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the agent server needs the 'server' extra (fastapi, uvicorn)")
pytest.importorskip("uvicorn", reason="the agent server needs the 'server' extra (fastapi, uvicorn)")

from slicer_agents import DiskSegmenter, ScriptedPolicy, SimulatedPolicy, point  # noqa: E402
from test_slicer_logic import make_case, snapshot  # noqa: E402

from IBISAgentLib import AgentStepError, proposal_markups  # noqa: E402
from IBISAgentLib.logic import IBISAgentLogic  # noqa: E402
from IBISAgentLib.slice_geometry import slice_geometry  # noqa: E402
from ibisagent.clicks import USER, USER_MOVED, Click  # noqa: E402
from slicer_server import TOKEN, Server, remote_logic  # noqa: E402

from ibisagent.client import AgentClient  # noqa: E402


@pytest.mark.parametrize("view,orientation", [("Red", "flipped-permuted"), ("Yellow", "lps"), ("Green", "permuted")])
def test_remote_episode_in_each_view(scene, server, view, orientation):
    volume, segmentation, ids, truth = make_case(scene, orientation, view)
    before = snapshot(segmentation, ids, volume)
    geometry = slice_geometry(volume, view)
    server.policy.inner = SimulatedPolicy(geometry.extract(truth).astype(bool), stop_iou=0.99)
    result = remote_logic(server).continueMask(volume, segmentation, ids[0], "segment the box", view=view, maxSteps=6)
    assert result["steps"]
    after = snapshot(segmentation, ids, volume)
    assert np.array_equal(after[1], before[1])
    outside = np.ones(truth.shape, bool)
    outside[geometry.kji_index()] = False
    assert np.array_equal(after[0][outside], before[0][outside])
    final = geometry.extract(after[0]).astype(bool)
    target = geometry.extract(truth).astype(bool)
    assert (final & target).sum() / (final | target).sum() > 0.8


def test_remote_click_lands_on_expected_voxel_and_edits_reach_server(scene, server):
    volume, segmentation, ids, _ = make_case(scene, "flipped-permuted", "Green")
    server.policy.inner = ScriptedPolicy([point(0.6875, 0.25), point(0.5, 0.5)])
    logic = remote_logic(server)
    logic.startEpisode(volume, segmentation, ids[0], view="Green")
    geometry = logic.workedSlice.geometry
    rows, cols = geometry.shape
    proposal = logic.proposeNext()
    col, row = int(0.6875 * cols), int(0.25 * rows)
    assert (proposal.click.x, proposal.click.y) == (col, row)
    shown = np.array(logic.workedSlice.markups.proposals.GetNthControlPointPosition(0))
    assert np.allclose(shown, geometry.ijk_to_ras_point(geometry.pixel_to_ijk(col, row)))
    # Drag, flip, add: exactly these reach the server.
    markups = logic.workedSlice.markups
    markups.proposals.SetNthControlPointPosition(0, *[float(v) for v in geometry.pixel_to_ras(col - 1, row + 1)])
    markups.flip(0)
    markups.add_user_point(2, 2, True)
    logic.acceptProposal()
    expected = [Click(col - 1, row + 1, False, USER_MOVED), Click(2, 2, True, USER)]
    state = logic.workedSlice.session.state()
    assert [Click.from_dict(c) for c in state["clicks"]] == expected
    # Undo over the wire is bit-exact.
    masks_before = snapshot(segmentation, ids, volume)
    logic.proposeNext()
    logic.acceptProposal()
    assert logic.undo()
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(segmentation, ids, volume), masks_before))
    assert [Click.from_dict(c) for c in logic.workedSlice.session.state()["clicks"]] == expected
    assert len(proposal_markups.read_history(segmentation, ids[0])) == 1
    logic.finish()


def test_server_gone_mid_episode_leaves_segment(scene):
    running = Server(DiskSegmenter()).start()
    try:
        volume, segmentation, ids, _ = make_case(scene, "lps", "Red")
        running.policy.inner = ScriptedPolicy([point(0.5, 0.5)])
        logic = remote_logic(running)
        logic.startEpisode(volume, segmentation, ids[0], view="Red")
        logic.proposeNext()
        before = snapshot(segmentation, ids, volume)
    finally:
        running.stop()
    with pytest.raises(AgentStepError) as error:
        logic.acceptProposal()
    assert error.value.kind == "unavailable"
    assert "Start the agent server" in str(error.value)
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(segmentation, ids, volume), before))
    logic.finish()


def test_wrong_token_is_reported(scene, server):
    volume, segmentation, ids, _ = make_case(scene, "ras", "Red")
    logic = IBISAgentLogic()
    logic.connect(server.url, "not-the-token", timeout=10)
    with pytest.raises(AgentStepError) as error:
        logic.startEpisode(volume, segmentation, ids[0], view="Red")
    assert error.value.kind == "authentication"
    assert logic.workedSlice is None


def test_a_forgotten_session_keeps_the_segment_and_its_history_and_undo_starts_again(scene, server):
    """The server is the one authority for undo: after it forgot the session, the session is
    opened again from the segment's slice (exactly), every step stays in the click history, and
    undo walks back exactly to that moment, no further."""
    volume, segmentation, ids, _ = make_case(scene, "lps", "Red")
    server.policy.inner = ScriptedPolicy([point(0.5, 0.5), point(0.3, 0.3), point(0.7, 0.6)])
    logic = remote_logic(server)
    logic.startEpisode(volume, segmentation, ids[0], view="Red")
    states = [snapshot(segmentation, ids, volume)]
    for _ in range(2):
        logic.proposeNext()
        logic.acceptProposal()
        states.append(snapshot(segmentation, ids, volume))
    session = logic.workedSlice.session
    with AgentClient(server.url, TOKEN) as other:  # the server forgets the session (as after a restart)
        other.call("DELETE", f"/v1/sessions/{session.id}")
    logic.proposeNext()  # rebuilt on the way, from the local mask
    logic.acceptProposal()
    assert session.rebuilds == 1 and len(logic.state()["steps"]) == 3
    assert len(proposal_markups.read_history(segmentation, ids[0])) == 3
    assert logic.undo()
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(segmentation, ids, volume), states[-1]))
    assert not logic.state()["can_undo"] and not logic.undo()
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(segmentation, ids, volume), states[-1]))
    assert len(proposal_markups.read_history(segmentation, ids[0])) == 2  # the steps before the rebuild stay
    logic.finish()
