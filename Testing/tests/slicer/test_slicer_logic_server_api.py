"""The logic's console/widget helpers against a real agent server on 127.0.0.1: pingServer,
serverInfo, flipProposal, and agent calls routed through ``callAgent`` onto one worker thread
(the widget's set-up), with MRML staying on the calling thread."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the agent server needs the 'server' extra (fastapi, uvicorn)")
pytest.importorskip("uvicorn", reason="the agent server needs the 'server' extra (fastapi, uvicorn)")

from slicer_agents import DiskSegmenter, ScriptedPolicy, point  # noqa: E402
from test_slicer_logic import make_case, snapshot  # noqa: E402
from slicer_scene import free_port  # noqa: E402
from slicer_server import TOKEN, Server, remote_logic  # noqa: E402

from IBISAgentLib import AgentStepError  # noqa: E402
from IBISAgentLib.logic import IBISAgentLogic  # noqa: E402
from ibisagent import protocol  # noqa: E402
from ibisagent.clicks import USER, USER_MOVED, Click  # noqa: E402


def test_ping_is_true_for_a_running_server_and_never_raises(server):
    assert remote_logic(server).pingServer() is True
    down = IBISAgentLogic()
    down.connect(f"http://127.0.0.1:{free_port()}", TOKEN, timeout=5)
    assert down.pingServer(timeout=1.0) is False
    assert IBISAgentLogic().pingServer() is True  # the in-process engine is always there


@pytest.mark.parametrize("url", ["", "   ", "not a url at all", "127.0.0.1:8765"])
def test_a_missing_or_malformed_server_url_is_refused_not_run_locally(url):
    logic = IBISAgentLogic()
    logic.connect("http://127.0.0.1:8765")
    with pytest.raises(ValueError, match="must look like http://127.0.0.1:8765"):
        logic.connect(url)
    assert logic.serverUrl == "http://127.0.0.1:8765"  # still the server it had, never the local engine


def test_server_info_says_what_the_server_runs(server):
    calls = []
    logic = remote_logic(server)
    logic.callAgent = lambda function: calls.append(function) or function()
    info = logic.serverInfo()
    assert calls, "serverInfo must go through callAgent"
    assert info["segmenter"] == "graphcut" and info["policy"]
    assert protocol.api_major(info["api_version"]) == protocol.API_MAJOR
    assert not info.get("local")


def test_server_info_failures_are_typed(server):
    wrong = IBISAgentLogic()
    wrong.connect(server.url, "not-the-token", timeout=10)
    with pytest.raises(AgentStepError) as error:
        wrong.serverInfo()
    assert error.value.kind == "authentication"
    down = IBISAgentLogic()
    down.connect(f"http://127.0.0.1:{free_port()}", TOKEN, timeout=5)
    with pytest.raises(AgentStepError) as error:
        down.serverInfo()
    assert error.value.kind == "unavailable"
    assert "Start the agent server" in str(error.value)


def test_server_info_of_the_local_engine():
    logic = IBISAgentLogic()
    logic.useLocalEngine("heuristic", "graphcut")
    info = logic.serverInfo()
    assert info["local"] is True
    assert (info["policy"], info["segmenter"]) == ("heuristic", "graphcut")
    assert info["api_version"] == protocol.API_VERSION


def test_flip_proposal_reaches_the_server(scene, server):
    volume, segmentation, ids, _ = make_case(scene, "flipped-permuted", "Red")
    server.policy.inner = ScriptedPolicy([point(0.5, 0.5), point(0.25, 0.25)])
    logic = remote_logic(server)
    with pytest.raises(RuntimeError, match="Continue my mask"):
        logic.flipProposal()
    logic.startEpisode(volume, segmentation, ids[0], view="Red")
    proposal = logic.proposeNext()
    col, row = proposal.click.x, proposal.click.y
    markups = logic.workedSlice.markups
    markups.add_user_point(2, 3, True)
    assert logic.flipProposal() == 1  # default: the newest point
    assert logic.flipProposal(0) == 0
    assert not markups.proposals.GetNthControlPointSelected(0)
    with pytest.raises(ValueError, match="no proposed point 5"):
        logic.flipProposal(5)
    # The point under the mouse (the list's active point) wins over the newest one.
    markups.proposals.GetDisplayNode().SetActiveControlPoint(1)
    assert logic.flipProposal() == 1
    markups.proposals.GetDisplayNode().SetActiveControlPoint(-1)
    logic.acceptProposal()
    clicks = [Click.from_dict(c) for c in logic.workedSlice.session.state()["clicks"]]
    assert clicks == [Click(col, row, False, USER_MOVED), Click(2, 3, True, USER)]
    logic.proposeNext()
    logic.skipProposal()
    with pytest.raises(ValueError, match="no proposed point to flip"):
        logic.flipProposal()
    logic.finish()


def test_agent_calls_run_on_one_worker_and_mrml_stays_on_the_caller(scene):
    """The widget's set-up: callAgent runs each agent call on a single worker thread and waits."""
    running = Server(DiskSegmenter()).start()
    worker = ThreadPoolExecutor(max_workers=1)
    threads = set()

    def on_worker(function):
        def run():
            threads.add(threading.get_ident())
            return function()
        return worker.submit(run).result()

    try:
        volume, segmentation, ids, _ = make_case(scene, "lps", "Yellow")
        running.policy.inner = ScriptedPolicy([point(0.5, 0.5), point(0.4, 0.6)])
        logic = remote_logic(running)
        logic.callAgent = on_worker
        assert worker.submit(logic.pingServer).result() is True  # safe on the worker: no callAgent
        assert logic.serverInfo()["segmenter"] == "disk"
        before = snapshot(segmentation, ids, volume)
        logic.startEpisode(volume, segmentation, ids[0], view="Yellow")
        logic.proposeNext()
        logic.acceptProposal()
        assert logic.undo()
        assert all(np.array_equal(a, b) for a, b in zip(snapshot(segmentation, ids, volume), before))
        logic.proposeNext()
        step = logic.acceptProposal()
        assert step.mask_pixels > 0
        logic.finish()
        assert threads and threading.get_ident() not in threads
    finally:
        worker.shutdown(wait=True)
        running.stop()


def test_a_cancelled_wait_passes_through_unchanged(scene, server):
    """The widget's Cancel raises ``ibisagent.errors.Cancelled`` from callAgent: the logic must
    pass that exact error on (its own kind, not a failure) and leave the segment as it was."""
    from ibisagent.errors import Cancelled
    volume, segmentation, ids, _ = make_case(scene, "lps", "Red")
    server.policy.inner = ScriptedPolicy([point(0.5, 0.5)])
    logic = remote_logic(server)
    logic.startEpisode(volume, segmentation, ids[0], view="Red")
    logic.proposeNext()
    before = snapshot(segmentation, ids, volume)

    def cancel(function):
        raise Cancelled("cancelled by the test")

    logic.callAgent = cancel
    with pytest.raises(Cancelled):
        logic.acceptProposal()
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(segmentation, ids, volume), before))
    logic.callAgent = lambda function: function()
    logic.finish()
