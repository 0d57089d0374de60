"""Full episodes through a real server and the client: the default tools end to end, and the
client's local copy of the episode kept exactly in step with the server's."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from ibisagent.clicks import USER, Click
from ibisagent.client import AgentClient
from ibisagent.episode import Episode
from ibisagent.mask_codec import decode_mask
from ibisagent.policies import build_policy
from ibisagent.segmenters import build_segmenter
from ibisagent.server.app import make_app
from ibisagent.server.routes.health import CAPABILITIES
from ibisagent.server.settings import Settings
from server_fakes import TOKEN, BrightPolicy, DiskSegmenter, ServerThread, blob_image, free_port


@pytest.fixture(scope="module")
def default_server():
    """`ibisagent serve` defaults: the heuristic policy and the sitk tool."""
    with ServerThread(make_app(Settings(token=TOKEN))) as running:
        yield running


def test_default_tools_full_episode(default_server):
    image = blob_image(96, 96, centre=(48, 40), radius=20)
    with AgentClient(default_server.url, token=TOKEN, timeout=60) as client:
        info = client.info()
        assert (info["policy"], info["segmenter"]) == ("heuristic", "graphcut")
        assert "weight-free" in info["policy_description"] and "not the IBISAgent model" in info["policy_description"]
        session = client.open_session(image, "Segment the bright disk.", max_steps=6)
        proposal = session.propose()
        assert proposal.click is not None and session.stop_reason is None
        step = session.apply([proposal.click])
        assert step.decision == "accepted" and session.mask.sum() == step.mask_pixels > 0
        result = session.run(6)
        # The same tools in this process, given the same image and decisions, end the same way.
        local = Episode(image, build_segmenter("graphcut"), build_policy("heuristic"), "Segment the bright disk.", max_steps=6)
        local.apply([local.propose().click])
        expected = local.run(6)
        assert result.stop_reason == expected.stop_reason
        assert [s.clicks for s in result.steps] == [s.clicks for s in expected.steps]
        assert np.array_equal(session.mask, expected.mask)
        truth = image[..., 0] > 127
        iou = (session.mask & truth).sum() / (session.mask | truth).sum()
        assert iou > 0.7
        state = session.state()
        assert len(state["steps"]) == len(session.steps)
        assert [Click.from_dict(c) for c in state["clicks"]] == session.clicks
        assert session.uploads == 1
        session.close()


def test_continue_my_mask_with_default_tools(default_server):
    image = blob_image(96, 96, centre=(48, 48), radius=22)
    truth = image[..., 0] > 127
    rough = truth.copy()
    rough[:, 48:] = False  # the user segmented only the left half
    with AgentClient(default_server.url, token=TOKEN, timeout=60) as client:
        session = client.open_session(image, "Continue my mask.", mask=rough)
        assert np.array_equal(session.mask, rough)
        proposal = session.propose()
        assert proposal.click.positive is True
        session.apply([proposal.click])
        assert session.mask.sum() > rough.sum()
        session.close()


def test_client_mirrors_a_local_episode_exactly(client):
    image = blob_image(seed=3)
    local = Episode(image, DiskSegmenter(), BrightPolicy(), "blob", max_steps=20)
    session = client.open_session(image, "blob")
    for _ in range(4):
        local_proposal, remote_proposal = local.propose(), session.propose()
        assert remote_proposal.action == local_proposal.action and remote_proposal.click == local_proposal.click
        local.apply([local_proposal.click])
        session.apply([remote_proposal.click])
        assert np.array_equal(session.mask, local.mask)
    user = Click(5, 5, True, USER)
    local.apply([user])
    step = session.apply([user])
    assert step.decision == "user" and np.array_equal(session.mask, local.mask)
    assert session.undo() and local.undo()
    assert np.array_equal(session.mask, local.mask) and session.clicks == local.clicks
    session.skip()
    edited = local.mask.copy()
    edited[:10, :10] = True
    session.replace_mask(edited)
    assert np.array_equal(session.mask, edited) and session.clicks == []
    assert session.undo() and np.array_equal(session.mask, local.mask)
    assert session.state()["revision"] == session.revision
    assert [s.clicks for s in session.steps] == [s.clicks for s in local.steps]


def test_run_matches_local_run_and_image_is_embedded_once(server, client):
    image = blob_image(seed=4, centre=(50, 70))
    local = Episode(image, DiskSegmenter(), BrightPolicy(), max_steps=8).run()
    segmenter = server.app.state.ibis.workers.engine.segmenter
    before = segmenter.embeddings
    session = client.open_session(image, max_steps=8)
    result = session.run()
    assert result.stop_reason == local.stop_reason
    assert len(result.steps) == len(local.steps) == len(session.steps)
    assert np.array_equal(session.mask, local.mask)
    assert segmenter.embeddings == before + 1 and session.uploads == 1


def test_server_side_run_endpoint_matches_the_client_loop(client):
    """POST /run runs the same loop on the server; the client's loop gives the same episode."""
    image = blob_image(seed=6, centre=(40, 60))
    by_client = client.open_session(image, max_steps=5)
    by_client.run()
    on_server = client.open_session(image, max_steps=5)
    answer = client.call("POST", f"/v1/sessions/{on_server.id}/run", {})
    assert answer["view"]["stop_reason"] == by_client.stop_reason
    assert [s["clicks"] for s in answer["steps"]] == [[c.to_dict() for c in s.clicks] for s in by_client.steps]


def test_capabilities_come_from_the_server_and_missing_means_unsupported(client, monkeypatch):
    assert client.ping() is True
    assert {name: client.supports(name) for name in CAPABILITIES} == CAPABILITIES
    older = dict(client.info(), capabilities={k: v for k, v in CAPABILITIES.items() if k != "undo"})
    monkeypatch.setattr(client, "info", lambda refresh=False: older)  # an older server without undo
    assert not client.supports("undo") and client.supports("apply")
    assert AgentClient(f"http://127.0.0.1:{free_port()}", token=TOKEN).ping() is False


def test_client_rereads_the_whole_mask_when_it_fell_out_of_step(client):
    session = client.open_session(blob_image(seed=8))
    session.apply([Click(64, 64, True)])
    session.revision -= 1  # as if an update had been lost on the way
    session.mask[:] = False  # and the local copy had drifted with it
    session.apply([Click(30, 30, True)])
    on_server = client.call("GET", f"/v1/sessions/{session.id}/mask")
    assert session.revision == on_server["revision"]
    assert np.array_equal(session.mask, decode_mask(base64.b64decode(on_server["data"])))
    assert session.mask[64, 64] and session.mask[30, 30]
