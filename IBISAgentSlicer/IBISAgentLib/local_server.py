"""`ibisagent serve` on this computer as a child process of Slicer: start, readiness, log, stop.

`LocalServer` is the process; `LocalServerLogic` (a part of `IBISAgentLogic`) is its life cycle
as the panel and the Python console use it: ``logic.startLocalServer()`` (the logic then uses
it as its agent server), ``logic.waitForLocalServer()``, ``logic.pollLocalServer()`` (new log
lines and a status line, for the panel's timer, which shows the line only when it changed),
``logic.stopLocalServer()``. Qt-free, so the same code runs (and is tested) outside Slicer.

- **Log in a file, not a pipe.** The server's output goes to a log file that `read_output`
  reads from where it left off (the widget calls it from a timer). A pipe would need a reader
  thread, and in Slicer a Python thread barely runs while the main thread sits in Qt (PythonQt
  keeps the GIL there): the pipe would fill up and block the server.
- **Stop the whole process group.** The usual interpreter in Slicer is ``PythonSlicer``, a CTK
  launcher that starts the real ``python-real`` as its own child and does not pass signals on:
  terminating the launcher leaves the server running and holding its port. The server is
  therefore started in a process group (session) of its own, and `stop` ends the whole group
  (``taskkill /T`` on Windows), then checks that nothing answers on the port any more.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence
from urllib.parse import urlsplit

from ibisagent import protocol

from . import requirements

#: Seconds `stop` waits for the server to end after asking, then after killing.
STOP_TIMEOUT_S = 5.0
#: Seconds a freshly started local server gets to say it is ready.
START_TIMEOUT_S = 120.0
#: The status lines of a local server just started and of one stopped.
STARTING, STOPPED = "Local server starting...", "Local server stopped."


class LocalServerError(RuntimeError):
    """The local server could not be started or stopped; the message says what to do."""


def serve_arguments(port: int, host: str = protocol.DEFAULT_HOST, extra: Sequence[str] = ()) -> List[str]:
    """Python arguments that run ``ibisagent serve`` on ``host``:``port``."""
    return ["-c", "import sys; from ibisagent.cli import main; sys.exit(main())",
            "serve", "--host", host, "--port", str(int(port))] + list(extra)


def port_in_use(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts connections on ``host``:``port``."""
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


class LocalServer:
    """One ``ibisagent serve`` child process on ``host``:``port``.

    ``python``: the interpreter to run (e.g. PythonSlicer, or a venv's python). ``environment``:
    its environment (default: this process's), to which ``module_dir`` is prepended on
    PYTHONPATH (so the server imports the same ``ibisagent`` as the module) and ``token`` is
    added as IBISAGENT_TOKEN. ``log_path``: where its output goes (default: a new temporary file).
    """

    def __init__(self, python: str, port: int, host: str = protocol.DEFAULT_HOST, extra: Sequence[str] = (),
                 module_dir: Optional[str] = None, token: Optional[str] = None,
                 environment: Optional[Mapping[str, str]] = None, log_path: Optional[str] = None) -> None:
        self.python = python
        self.host = host
        self.port = int(port)
        self.arguments = serve_arguments(self.port, host, extra)
        self.environment: Dict[str, str] = dict(os.environ if environment is None else environment)
        if module_dir:
            path = self.environment.get("PYTHONPATH", "")
            self.environment["PYTHONPATH"] = module_dir + (os.pathsep + path if path else "")
        self.environment["PYTHONUNBUFFERED"] = "1"
        if token:
            self.environment[protocol.TOKEN_ENV] = token
        if log_path is None:
            handle, log_path = tempfile.mkstemp(prefix="ibisagent-server-", suffix=".log")
            os.close(handle)
        self.log_path = log_path
        self._process: Optional[subprocess.Popen] = None
        self._read_at = 0
        self._partial = b""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def command(self) -> List[str]:
        return [self.python] + self.arguments

    def start(self) -> None:
        """Start the server (returns at once; see `ready`). Refuses a port already in use."""
        if self.running:
            raise LocalServerError("The local server is already running.")
        if port_in_use(self.host, self.port):
            raise LocalServerError(
                f"Port {self.port} is already in use (another agent server?). Stop it, or choose another port "
                "in the server URL."
            )
        options = {}
        if os.name == "nt":
            options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            options["start_new_session"] = True
        with open(self.log_path, "wb") as log:
            try:
                self._process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log,
                                                 stderr=subprocess.STDOUT, env=self.environment, **options)
            except OSError as error:
                raise LocalServerError(
                    f"Could not run {self.python} ({error}). Set 'Server Python' to a Python with IBISAgent."
                ) from None
        self._read_at, self._partial = 0, b""

    @property
    def pid(self) -> Optional[int]:
        """The process id of what was started (the launcher, when there is one)."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def exit_code(self) -> Optional[int]:
        """The exit status once the process has ended, else None."""
        return None if self._process is None else self._process.poll()

    def ready(self, timeout: float = 1.0) -> bool:
        """True when the server answers /health and its models are loaded; never raises."""
        from ibisagent.client import AgentClient

        if not self.running:
            return False
        try:
            with AgentClient(self.url, timeout=timeout, connect_timeout=timeout) as client:
                return bool(client.call("GET", protocol.HEALTH, idempotent=True).get("ready"))
        except Exception:  # noqa: BLE001 - not up yet, whatever the reason
            return False

    def read_output(self) -> List[str]:
        """The complete lines the server wrote since the last call."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._read_at)
                data = log.read()
        except OSError:
            return []
        self._read_at += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """End the server and everything it started; safe to call twice. Raises
        LocalServerError if its port still answers afterwards."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            self._end_group(process, timeout)
        deadline = time.monotonic() + timeout
        while port_in_use(self.host, self.port, timeout=0.2):
            if time.monotonic() > deadline:
                raise LocalServerError(
                    f"The local server stopped, but port {self.port} still answers: another process holds it. "
                    "Stop that process (or choose another port), then start the server again."
                )
            time.sleep(0.1)

    @staticmethod
    def _end_group(process: subprocess.Popen, timeout: float) -> None:
        if os.name == "nt":
            subprocess.run(["taskkill", "/PID", str(process.pid), "/T", "/F"], capture_output=True)
            process.wait(timeout)
            return
        group = os.getpgid(process.pid)
        os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _group_alive(group, process) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _group_alive(group, process):  # e.g. the launcher ended but its child, the server, did not
            os.killpg(group, signal.SIGKILL)
        process.wait(timeout)


def _group_alive(group: int, process: subprocess.Popen) -> bool:
    """Whether any process of ``group`` is left (reaping our own child first, so an ended
    launcher does not linger as a zombie member)."""
    process.poll()
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def default_python() -> str:
    """The interpreter to run a server with when none is set: in Slicer, ``sys.executable``
    is PythonSlicer (set by qSlicerCoreApplication), elsewhere this Python."""
    return sys.executable


def is_slicer_python(python: str) -> bool:
    """Whether ``python`` is Slicer's own interpreter (PythonSlicer, or the one running now)."""
    return os.path.basename(python).lower().startswith("pythonslicer") or python == sys.executable


def server_environment(python: str) -> Dict[str, str]:
    """The environment to run ``python`` in: Slicer's own Python needs Slicer's environment (this
    process's); another Python gets the one Slicer was started with, when known."""
    if not is_slicer_python(python):
        try:
            import slicer.util

            return dict(slicer.util.startupEnvironment())
        except Exception:  # noqa: BLE001 - outside Slicer (no slicer.app): this process's
            pass
    return dict(os.environ)


@dataclass
class ServerStatus:
    """One look at the local server: ``lines`` it wrote since the last look, ``text`` (one line
    for the panel), ``running`` and ``ready``; ``changed``: ``text`` differs from the line the
    previous look (or the start, `STARTING`) reported, so the panel shows only news and keeps
    what "Test connection" said meanwhile."""

    lines: List[str]
    text: str
    running: bool
    ready: bool
    changed: bool = False


class LocalServerLogic:
    """The local server's life cycle, for `IBISAgentLogic` (a mixin: it uses the logic's
    settings, `connect` and `log`). One server at a time; Slicer stops it when quitting."""

    localServer: Optional[LocalServer] = None
    #: The local server answered /health with its models loaded (`pollLocalServer` notes it).
    localServerReady = False
    _localServerDeadline = 0.0
    #: The status line the last look reported (`ServerStatus.changed`).
    _localServerText = ""

    @property
    def localServerRunning(self) -> bool:
        """Whether the local server started here is still running (the panel's Start/Stop)."""
        return self.localServer is not None and self.localServer.running

    def localServerPackages(self, python: Optional[str] = None) -> List[str]:
        """The packages ``ibisagent serve`` still needs when it runs in Slicer's own Python
        (default: the settings' Server Python, else Slicer's); [] for another Python (its
        environment is the user's)."""
        python = python or self.settings.serverPython or default_python()
        return requirements.missing(requirements.server_requirements()) if is_slicer_python(python) else []

    def startLocalServer(self, python: Optional[str] = None, port: Optional[int] = None,
                         arguments: Optional[Sequence[str]] = None, token: Optional[str] = None) -> LocalServer:
        """Start ``ibisagent serve`` on 127.0.0.1 as a child process in a process group of its own,
        and use it as the agent server (`connect`). Defaults come from the settings: Server Python
        (else Slicer's), the port of the server URL (else 8765), Server arguments, the token.
        Returns at once (`waitForLocalServer`, `pollLocalServer` tell when it is ready); refuses
        a port already in use and a second server (LocalServerError)."""
        if self.localServerRunning:
            raise LocalServerError("The local server is already running; stop it first.")
        settings = self.settings
        python = python or settings.serverPython or default_python()
        if port is None:
            port = urlsplit(settings.serverUrl or "").port or protocol.DEFAULT_PORT
        if arguments is None:
            arguments = shlex.split(settings.serverArguments)
        token = token if token is not None else (settings.token or None)
        server = LocalServer(python, port, protocol.DEFAULT_HOST, arguments, module_dir=requirements.MODULE_DIR,
                             token=token, environment=server_environment(python))
        server.start()
        self.localServer, self.localServerReady, self._localServerText = server, False, STARTING
        self._localServerDeadline = time.monotonic() + START_TIMEOUT_S
        self.connect(server.url, token, self.timeout)
        self.log("$ " + " ".join(shlex.quote(part) for part in server.command))
        return server

    def pollLocalServer(self) -> ServerStatus:
        """New log lines and where the local server stands. Touches no MRML and may wait up to
        a second for the server, so the panel calls it off the main thread; never raises."""
        status = self._lookAtLocalServer()
        status.changed, self._localServerText = status.text != self._localServerText, status.text
        return status

    def _lookAtLocalServer(self) -> ServerStatus:
        server = self.localServer
        if server is None:
            return ServerStatus([], "No local server.", False, False)
        lines = server.read_output()
        if not server.running:
            return ServerStatus(lines + [f"[server exited with code {server.exit_code}]"], STOPPED, False, False)
        if not self.localServerReady:
            self.localServerReady = server.ready(1.0)
        if self.localServerReady:
            return ServerStatus(lines, "Local server ready.", True, True)
        late = time.monotonic() > self._localServerDeadline
        return ServerStatus(lines, "Local server did not answer; see its log." if late else STARTING, True, False)

    def waitForLocalServer(self, timeout: float = START_TIMEOUT_S) -> None:
        """Block until the local server is ready (for the console); raises LocalServerError
        with its last log lines when it exits or does not get ready within ``timeout`` s."""
        deadline, lines = time.monotonic() + timeout, []
        while True:
            status = self.pollLocalServer()
            lines = (lines + status.lines)[-20:]
            if status.ready:
                return
            if not status.running or time.monotonic() > deadline:
                raise LocalServerError(f"{status.text} Its last lines:\n" + "\n".join(lines))
            time.sleep(0.2)

    def stopLocalServer(self) -> List[str]:
        """Stop the local server and everything it started (its whole process group) and check
        its port is free; safe to call twice. Returns its last log lines; raises
        LocalServerError when another process still answers on the port."""
        server, self.localServer, self.localServerReady = self.localServer, None, False
        if server is None:
            return []
        try:
            server.stop()
        finally:
            lines = server.read_output()
        self.log(STOPPED)
        return lines
