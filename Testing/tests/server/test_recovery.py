"""Nothing is lost: when the server forgets a session (idle expiry, or a crash and restart), the
client rebuilds it from its own state and the user's mask comes through bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from ibisagent import protocol
from ibisagent.clicks import Click
from ibisagent.client import AgentClient, ServerUnavailableError
from server_fakes import TOKEN, blob_image, free_port, start_fake_server


def test_expired_session_is_rebuilt_from_the_local_mask():
    with start_fake_server(session_ttl_s=0.4, reaper_interval_s=0.1) as server:
        with AgentClient(server.url, token=TOKEN) as client:
            session = client.open_session(blob_image(), "blob")
            session.apply([Click(64, 64, True)])
            before = session.mask.copy()
            rebuilt = []
            session.on_rebuild = rebuilt.append
            old_id = session.id
            time.sleep(1.0)
            step = session.apply([Click(100, 100, True)])  # the server reaped the session meanwhile
            assert rebuilt == [session] and session.rebuilds == 1 and session.id != old_id
            assert step["index"] == 1 and session.uploads == 2
            assert np.all(session.mask[before]) and session.mask.sum() > before.sum()
            assert session.clicks == [Click(100, 100, True)]


def _start(port: int, env: dict) -> subprocess.Popen:
    command = [sys.executable, "-m", "ibisagent.cli", "serve", "--port", str(port), "--token", TOKEN,
               "--log-level", "warning"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{protocol.HEALTH}", timeout=1).json()["ready"]:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError("server exited: " + process.stdout.read())
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not become ready")


def test_server_killed_and_restarted_mid_episode(tmp_path):
    """Runs the real `ibisagent serve` (heuristic policy, sitk tool) in a child process."""
    port = free_port()
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path))
    first = _start(port, env)
    try:
        with AgentClient(f"http://127.0.0.1:{port}", token=TOKEN, timeout=60) as client:
            image = blob_image(96, 96, centre=(48, 48), radius=20)
            session = client.open_session(image, "Segment the bright disk.")
            proposal = session.propose()
            session.apply([Click.from_dict(proposal["click"])])
            session.apply([Click(30, 48, True)])
            before = session.mask.copy()
            assert before.any()
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            with pytest.raises(ServerUnavailableError, match="ibisagent serve"):
                session.propose()
            assert np.array_equal(session.mask, before)
            second = _start(port, env)
            try:
                session.propose()  # the new server never heard of the session: rebuilt
                assert session.rebuilds == 1 and np.array_equal(session.mask, before)
                state = session.state()
                assert state["revision"] == session.revision and state["steps"] == []
                session.apply([Click(60, 48, True)])
                assert session.undo() and np.array_equal(session.mask, before)
            finally:
                second.kill()
                second.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
