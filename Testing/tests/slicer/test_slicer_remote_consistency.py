"""Remote mode has one authority for a worked slice's mask: the agent server. After any mix of
applied steps, hand edits in the segment, undo and propagation (each propagated slice is its own
server session), the server's mask, the client's and the segment's slice agree bit for bit, and
the client's revision is the server's. Real MRML (slicer-core) and a real server on 127.0.0.1."""

from __future__ import annotations

import base64
import random

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the agent server needs the 'server' extra (fastapi, uvicorn)")
pytest.importorskip("uvicorn", reason="the agent server needs the 'server' extra (fastapi, uvicorn)")

from slicer_agents import ScriptedPolicy, point  # noqa: E402
from slicer_server import TOKEN, remote_logic  # noqa: E402
from test_slicer_logic import make_case  # noqa: E402

from ibisagent import protocol  # noqa: E402
from ibisagent.client import AgentClient  # noqa: E402
from ibisagent.clicks import USER, Click  # noqa: E402
from ibisagent.mask_codec import decode_mask  # noqa: E402


def assert_agree(observer: AgentClient, logic) -> None:
    """The open slice: the server's mask == the client's == the segment's slice."""
    worked = logic.workedSlice
    session = worked.session
    answer = observer.call("GET", protocol.SESSION_MASK.replace("{session_id}", session.id))
    on_server = decode_mask(base64.b64decode(answer["data"]))
    assert answer["revision"] == session.revision
    assert np.array_equal(on_server, session.mask), "server and client disagree"
    assert np.array_equal(worked.labelmap.read(), session.mask), "segment and client disagree"


def apply_step(logic, rng: random.Random) -> None:
    rows, cols = logic.workedSlice.geometry.shape
    if rng.random() < 0.5:
        logic.proposeNext()
        logic.acceptProposal()  # the proposal as it stands on screen
    else:
        logic.acceptProposal([Click(rng.randrange(cols), rng.randrange(rows), rng.random() < 0.7, USER)])


def hand_edit(logic, rng: random.Random) -> None:
    """Paint or erase a box in the segment's slice (as the Segment Editor would), then ask the
    agent: the edit is sent before the call."""
    worked = logic.workedSlice
    mask = worked.labelmap.read().copy()
    rows, cols = mask.shape
    top, left = rng.randrange(rows), rng.randrange(cols)
    mask[top:top + rng.randint(1, 5), left:left + rng.randint(1, 5)] = rng.random() < 0.6
    worked.labelmap.write(mask)
    logic.proposeNext()


def one_of(logic, rng: random.Random, observer: AgentClient) -> None:
    choice = rng.random()
    if choice < 0.45:
        apply_step(logic, rng)
    elif choice < 0.7:
        hand_edit(logic, rng)
    else:
        logic.undo()
    assert_agree(observer, logic)


@pytest.mark.parametrize("seed", [3, 11])
def test_server_client_and_segment_agree_after_any_mix_of_edits(scene, server, seed):
    rng = random.Random(seed)
    volume, segmentation, ids, _truth = make_case(scene, "lps", "Red")
    server.policy.inner = ScriptedPolicy([point(rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.95), rng.random() < 0.7)
                                          for _ in range(400)])
    logic = remote_logic(server)
    with AgentClient(server.url, TOKEN) as observer:
        logic.startEpisode(volume, segmentation, ids[0], view="Red")
        assert_agree(observer, logic)
        propagations = 0
        for _round in range(24):
            if rng.random() < 0.15 and logic.workedSlice.labelmap.read().any():
                logic.finish()
                logic.startPropagation(volume, segmentation, ids[0], view="Red", direction=rng.choice(["up", "down"]),
                                       maxSlices=2, stepsPerSlice=1)
                while logic.workedSlice is not None:  # every propagated slice, reviewed
                    assert_agree(observer, logic)
                    for _edit in range(rng.randint(1, 3)):
                        one_of(logic, rng, observer)
                    logic.nextPropagatedSlice()
                propagations += 1
                logic.startEpisode(volume, segmentation, ids[0], view="Red")  # where the review left the view
                assert_agree(observer, logic)
            else:
                one_of(logic, rng, observer)
        logic.finish()
    assert propagations >= 1
