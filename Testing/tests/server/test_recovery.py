"""Nothing is lost: when the server forgets a session (idle expiry, or a crash and restart), the
client opens it again from the image and its current mask, the user's mask comes through bit for
bit and the client keeps every step. The server is the one authority for undo: the new server
session's undo history starts at the rebuild, and undo stays exact within it. Leases are timed
with a clock the tests move, never with sleeps."""

from __future__ import annotations

import base64
import os
import signal
import threading
import types

import numpy as np
import pytest
from ibisagent.clicks import Click
from ibisagent.mask_codec import decode_mask
from ibisagent.client import AgentClient
from ibisagent.errors import ServerUnavailableError
from ibisagent.server.sessions import SessionGone, SessionStore
from server_fakes import TOKEN, FakeClock, blob_image, free_port, start_fake_server, start_serve_process

TTL = 60.0


def test_expired_session_is_rebuilt_from_the_local_mask():
    clock = FakeClock()
    with start_fake_server(clock=clock, session_ttl_s=TTL) as server:
        with AgentClient(server.url, token=TOKEN) as client:
            session = client.open_session(blob_image(), "blob")
            session.apply([Click(64, 64, True)])
            before = session.mask.copy()
            rebuilt = []
            session.add_listener(lambda change: rebuilt.append(change.kind))
            old_id = session.id
            clock.advance(TTL + 1)  # idle past the lease: the next lookup finds it expired
            step = session.apply([Click(100, 100, True)])
            assert rebuilt == ["rebuilt", "applied"] and session.rebuilds == 1 and session.id != old_id
            assert session.uploads == 2
            assert np.all(session.mask[before]) and session.mask.sum() > before.sum()
            assert session.clicks == [Click(100, 100, True)]  # the tool's clicks restart
            assert step.index == 2 and len(session.steps) == 2  # the episode's steps do not


def test_undo_is_the_servers_and_starts_again_at_a_rebuild():
    clock = FakeClock()
    with start_fake_server(clock=clock, session_ttl_s=TTL) as server:
        with AgentClient(server.url, token=TOKEN) as client:
            session = client.open_session(blob_image(), "blob")
            masks = [session.mask.copy()]
            for click in (Click(40, 40, True), Click(90, 90, True)):
                session.apply([click])
                masks.append(session.mask.copy())
            edited = session.mask.copy()
            edited[:8, :8] = True
            session.replace_mask(edited)  # a hand edit: an undo entry like a step
            assert session.undo() and np.array_equal(session.mask, masks[-1])  # undone by the server
            session.replace_mask(edited)
            clock.advance(TTL + 1)
            session.apply([Click(20, 100, False)])  # rebuilt on the way, from the edited mask
            after = session.mask.copy()
            assert session.rebuilds == 1 and len(session.steps) == 3 and session.can_undo
            session.apply([Click(100, 20, True)])
            on_server = lambda: client.call("GET", f"/v1/sessions/{session.id}/mask")  # noqa: E731
            for expected in (after, edited):  # the new server session's history, exactly
                assert session.undo() and np.array_equal(session.mask, expected)
                assert on_server()["revision"] == session.revision  # the client follows every undo
                assert np.array_equal(decode_mask(base64.b64decode(on_server()["data"])), session.mask)
            assert not session.can_undo and not session.undo()  # back to the rebuild, no further
            assert np.array_equal(session.mask, edited) and len(session.steps) == 2  # the steps before it stay


def test_a_session_stays_while_a_model_call_outlasts_its_lease():
    clock = FakeClock()
    # The reaper task never runs by itself here; the test runs its sweep while the call is held.
    with start_fake_server(clock=clock, session_ttl_s=TTL, reaper_interval_s=3600) as server:
        store = server.app.state.ibis.store
        tool = server.app.state.ibis.workers.engine.segmenter
        with AgentClient(server.url, token=TOKEN, timeout=30) as client:
            session = client.open_session(blob_image(), "blob")
            tool.hold()
            clicking = threading.Thread(target=session.apply, args=([Click(64, 64, True)],))
            clicking.start()
            try:
                assert tool.started.wait(30)
                clock.advance(TTL + 1)
                assert store.reap() == [] and len(store) == 1  # busy, not idle
            finally:
                tool.release()
                clicking.join(30)
            assert len(session.steps) == 1
            session.propose()  # the lease started again when the call ended
            assert session.rebuilds == 0


def test_the_store_expires_only_idle_sessions():
    clock = FakeClock()
    ended = []
    store = SessionStore(TTL, 4, clock=clock, on_end=ended.append)
    busy, idle = (types.SimpleNamespace(id=name, in_flight=0, held_bytes=0) for name in ("busy", "idle"))
    store.add(busy)
    store.add(idle)
    busy.in_flight = 1
    clock.advance(TTL + 1)
    assert store.reap() == ["idle"] and ended == [idle]
    with pytest.raises(SessionGone, match="expired"):
        store.get("idle")
    assert store.get("busy") is busy
    busy.in_flight = 0
    clock.advance(TTL / 2)
    assert store.get("busy") is busy  # renewed by the lookup
    clock.advance(TTL + 1)
    with pytest.raises(SessionGone, match="expired"):  # expired at lookup, before any reaper sweep
        store.get("busy")


def test_server_killed_and_restarted_mid_episode(tmp_path):
    """Runs the real `ibisagent serve` (heuristic policy, sitk tool) in a child process."""
    port = free_port()
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path))
    first = start_serve_process(port, env)
    try:
        with AgentClient(f"http://127.0.0.1:{port}", token=TOKEN, timeout=60) as client:
            image = blob_image(96, 96, centre=(48, 48), radius=20)
            session = client.open_session(image, "Segment the bright disk.")
            proposal = session.propose()
            session.apply([proposal.click])
            session.apply([Click(30, 48, True)])
            before = session.mask.copy()
            assert before.any()
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            with pytest.raises(ServerUnavailableError, match="ibisagent serve"):
                session.propose()
            assert np.array_equal(session.mask, before)
            second = start_serve_process(port, env)
            try:
                session.propose()  # the new server never heard of the session: rebuilt
                assert session.rebuilds == 1 and np.array_equal(session.mask, before)
                state = session.state()
                assert state["revision"] == session.revision and state["steps"] == []
                session.apply([Click(60, 48, True)])
                assert len(session.steps) == 3 and session.steps[-1].index == 3
                assert session.undo() and np.array_equal(session.mask, before)
                assert not session.undo()  # the undo history before the crash died with that server
                assert np.array_equal(session.mask, before) and len(session.steps) == 2
            finally:
                second.kill()
                second.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
