"""The Qt-free support the widget relies on: the agent worker and its GIL-releasing wait, the
requirements read from pyproject.toml, and the local server child process (started, read,
stopped as a whole process group, even behind a launcher that ignores SIGTERM)."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

import pytest

from IBISAgentLib import requirements
from ibisagent.errors import Cancelled
from IBISAgentLib.agent_worker import AgentWorker, wait_for
from IBISAgentLib.local_server import STOPPED, LocalServer, LocalServerError, port_in_use
from slicer_scene import ROOT, free_port


# -- worker --------------------------------------------------------------------------------------
def test_calls_run_in_order_on_one_daemon_thread_and_errors_come_back():
    worker = AgentWorker()
    seen = []
    futures = [worker.submit(lambda n=n: seen.append((n, threading.current_thread().name)) or n) for n in range(5)]
    assert [wait_for(f) for f in futures] == list(range(5))
    assert [n for n, _ in seen] == list(range(5)) and len({name for _, name in seen}) == 1
    assert worker._thread.daemon  # a hung call can never keep the application from quitting
    failing = worker.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        wait_for(failing)
    worker.shutdown()


def test_the_wait_ticks_the_event_loop_and_cancel_leaves_the_call_running():
    worker = AgentWorker()
    release = threading.Event()
    future = worker.submit(lambda: release.wait(30) and "done")
    ticks, slow = [], []
    with pytest.raises(Cancelled):
        wait_for(future, tick=lambda: ticks.append(1), should_cancel=lambda: len(ticks) >= 3,
                 on_slow=lambda: slow.append(1), slow_after=0.0)
    assert len(ticks) == 3 and slow == [1] and worker.busy and not future.done()
    release.set()
    assert wait_for(future) == "done"
    worker.shutdown()


def test_a_cancelled_call_keeps_its_thread_and_later_calls_get_a_fresh_one():
    worker = AgentWorker()
    release, threads = threading.Event(), []
    with pytest.raises(Cancelled):
        worker.call(lambda: threads.append(threading.current_thread()) or release.wait(30),
                    should_cancel=lambda: bool(threads))
    assert worker.call(lambda: threads.append(threading.current_thread()) or "next") == "next"  # not queued behind
    hung, fresh = threads
    assert hung is not fresh and hung.is_alive() and fresh.daemon
    release.set()
    hung.join(5)
    assert not hung.is_alive()  # the old thread ends after its call
    assert worker.call(lambda: threading.current_thread()) is fresh
    worker.shutdown()


# -- requirements ----------------------------------------------------------------------------------
def test_requirements_come_from_pyproject_with_or_without_tomllib(monkeypatch):
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        project = tomllib.load(handle)["project"]
    assert requirements.engine_requirements() == project["dependencies"]
    assert requirements.server_requirements() == project["dependencies"] + project["optional-dependencies"]["server"]
    monkeypatch.setitem(sys.modules, "tomllib", None)  # Python 3.9, as in Slicer 5.6 and 5.8
    assert requirements.server_requirements() == project["dependencies"] + project["optional-dependencies"]["server"]
    with pytest.raises(requirements.RequirementsError, match="no 'nonsense' extra"):
        requirements.read_requirements(("nonsense",))


def test_missing_requirements_are_found_by_import_name():
    assert requirements.import_name("pillow>=9.0") == "PIL" and requirements.import_name("SimpleITK>=2.2") == "SimpleITK"
    assert requirements.missing(["numpy>=1.22", "pillow>=9.0", "surely-not-installed-ibis>=1"]) == [
        "surely-not-installed-ibis>=1"]


# -- local server --------------------------------------------------------------------------------
posix_only = pytest.mark.skipif(os.name == "nt", reason="process groups are POSIX; Windows uses taskkill /T")


def _launcher(tmp_path):
    """A stand-in for PythonSlicer: a launcher that ignores SIGTERM (passes nothing on) and runs
    the real interpreter as its child."""
    path = tmp_path / "PythonSlicer"
    path.write_text(
        f"#!{sys.executable}\n"
        "import signal, subprocess, sys\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"sys.exit(subprocess.call([{sys.executable!r}] + sys.argv[1:],\n"
        "                          preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL)))\n"
    )
    path.chmod(0o755)
    return str(path)


@posix_only
def test_the_console_starts_uses_and_stops_a_local_server_behind_a_launcher(tmp_path, monkeypatch):
    """What the panel's Start/Stop local server does, from the Python console: the logic starts
    ``ibisagent serve`` in a process group of its own, uses it, and stops the whole group."""
    pytest.importorskip("uvicorn", reason="the agent server needs the 'server' extra (fastapi, uvicorn)")
    from IBISAgentLib.logic import IBISAgentLogic

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    port = free_port()
    logic = IBISAgentLogic()
    server = logic.startLocalServer(python=_launcher(tmp_path), port=port, token="local-test-token")
    try:
        assert not logic.local and logic.serverUrl == f"http://127.0.0.1:{port}"  # the logic uses it
        logic.waitForLocalServer(timeout=120)
        assert logic.localServerReady and logic.pingServer() and logic.serverInfo()["policy"] == "heuristic"
        group = os.getpgid(server.pid)
        assert group != os.getpgid(0)  # its own process group, not Slicer's
        with pytest.raises(LocalServerError, match="already running"):
            logic.startLocalServer(port=port)
        status = logic.pollLocalServer()
        assert status.running and status.ready and status.text == "Local server ready."
        assert not status.changed  # the wait above already reported it ready
        assert logic.localServerRunning and logic.labels()["startServerButton"] == "Stop local server"
        assert server.read_output() == []  # the logic read the log; nothing is read twice
    finally:
        logic.stopLocalServer()
    assert not port_in_use("127.0.0.1", port) and logic.localServer is None
    assert not logic.localServerRunning and logic.labels()["startServerButton"] == "Start local server"
    with pytest.raises(ProcessLookupError):  # the launcher and the real server are both gone
        os.killpg(group, 0)
    assert logic.stopLocalServer() == []  # twice is fine


def test_a_port_held_by_someone_else_is_reported(tmp_path):
    from IBISAgentLib.logic import IBISAgentLogic

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        logic = IBISAgentLogic()
        with pytest.raises(LocalServerError, match="already in use"):
            logic.startLocalServer(python=sys.executable, port=port)
        assert logic.local and logic.localServer is None  # nothing changed
        server = LocalServer(sys.executable, port, log_path=str(tmp_path / "server.log"))
        with pytest.raises(LocalServerError, match="still answers"):
            server.stop(timeout=0.3)


def test_a_server_that_exits_at_once_is_reported_stopped_once(tmp_path):
    """The panel's timer shows a status line only when it changed (``ServerStatus.changed``)."""
    from IBISAgentLib.logic import IBISAgentLogic

    logic = IBISAgentLogic()
    server = logic.startLocalServer(python=sys.executable, port=free_port(), arguments=["--no-such-option"])
    assert server.command[-1] == "--no-such-option"
    try:
        deadline = time.monotonic() + 60
        while server.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not logic.localServerRunning  # it exited by itself
        first, again = logic.pollLocalServer(), logic.pollLocalServer()
        assert (first.text, first.running, first.changed) == (STOPPED, False, True)  # news after STARTING
        assert (again.text, again.changed) == (STOPPED, False)
        assert any("exited with code 2" in line for line in first.lines)
    finally:
        logic.stopLocalServer()
    assert logic.pollLocalServer().changed  # "No local server." is news again
