"""Instant, deterministic stand-ins for the policy and the tool, and helpers to run a real
uvicorn server on 127.0.0.1 in a thread, for tests and the benchmark.

The fakes isolate the server: with them every millisecond measured is transport, encoding and
bookkeeping, and every mask is predictable from (image, clicks) alone.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from typing import Optional, Sequence

import httpx
import numpy as np
import uvicorn
from ibisagent import protocol
from ibisagent.actions import NEGATIVE, POSITIVE, TERMINATE, Action, format_response
from ibisagent.annotator import next_click
from ibisagent.policies.base import Observation, Policy
from ibisagent.segmenters.base import Prediction, Segmenter
from ibisagent.server.app import make_app
from ibisagent.server.settings import Settings
from ibisagent.engine import Engine

TOKEN = "test-token-0123456789"
DISK_RADIUS = 12


class DiskSegmenter(Segmenter):
    """Each positive click paints a disk, each negative click erases one, on top of the prior.
    ``delay_s`` simulates a slow model. ``embeddings`` and ``threads`` (ids of the threads that
    used it) let tests check that sessions stay on the worker that owns this tool.

    ``held``: clear it to make every predict call wait until it is set again; ``started`` is set
    when a predict call begins. Tests use the pair to know a model call is running, without
    sleeping."""

    name = "disk"
    description = "test tool: disks around clicks"

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.embeddings = 0
        self.threads: set = set()
        self.started = threading.Event()
        self.held = threading.Event()
        self.held.set()

    def hold(self) -> None:
        """Make the next predict calls wait (until `release`)."""
        self.started.clear()
        self.held.clear()

    def release(self) -> None:
        self.held.set()

    def _embed(self, image: np.ndarray) -> object:
        self.embeddings += 1
        self.threads.add(threading.get_ident())
        rows, cols = image.shape[:2]
        return np.ogrid[:rows, :cols]

    def _predict(self, image_state, clicks, prior_mask, prior_state) -> Prediction:
        self.threads.add(threading.get_ident())
        self.started.set()
        if not self.held.wait(60):
            raise RuntimeError("the test never released the held tool")
        if self.delay_s:
            time.sleep(self.delay_s)
        yy, xx = image_state
        shape = (yy.shape[0], xx.shape[1])
        mask = np.zeros(shape, bool) if prior_mask is None else prior_mask.copy()
        click = clicks[-1]
        disk = (yy - click.y) ** 2 + (xx - click.x) ** 2 <= DISK_RADIUS ** 2
        mask[disk] = click.positive
        return Prediction(mask, None, 1.0)


class BrightPolicy(Policy):
    """Targets the bright pixels (red channel > 127) like the simulated annotator; stops at
    ``stop_iou``. Deterministic per image, so sessions on different images must differ."""

    name = "bright"
    description = "test policy: simulated annotator of the bright region"

    def __init__(self, stop_iou: float = 0.95) -> None:
        self.stop_iou = stop_iou

    def respond(self, observation: Observation) -> str:
        truth = observation.image[..., 0] > 127
        inter = np.logical_and(truth, observation.mask).sum()
        union = np.logical_or(truth, observation.mask).sum()
        if union and inter / union >= self.stop_iou:
            return format_response("good enough", Action(TERMINATE), "done")
        click = next_click(truth, observation.mask, [(c.x, c.y) for c in observation.clicks])
        if click is None:
            return format_response("exact", Action(TERMINATE), "done")
        x, y, positive = click
        rows, cols = truth.shape
        action = Action(POSITIVE if positive else NEGATIVE, round((x + 0.5) / cols, 4), round((y + 0.5) / rows, 4))
        return format_response("largest error", action)


def fake_engine(delay_s: float = 0.0) -> Engine:
    return Engine(BrightPolicy(), DiskSegmenter(delay_s))


def blob_image(rows: int = 128, cols: int = 128, centre=(64, 64), radius: int = 30, seed: int = 0) -> np.ndarray:
    """A grey RGB image with one bright disk (the target) and a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[:rows, :cols]
    grey = rng.integers(0, 60, size=(rows, cols)).astype(np.uint8)
    grey[(yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2] = 200
    return np.repeat(grey[:, :, None], 3, axis=2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SilentServer:
    """A real TCP server on 127.0.0.1 that accepts every connection, reads what it is sent and
    never answers (a hung server, or a model far slower than the client's timeout)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.recv(65536)
            self.accepted.append(conn)

    def __enter__(self) -> "SilentServer":
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()
        self.thread.join(5)


class ServerThread:
    """A real uvicorn server on 127.0.0.1 in a background thread."""

    def __init__(self, app, port: Optional[int] = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.app = app

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not (self.server.started and self.app.state.ibis.workers.ready):
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class FakeClock:
    """A clock for the session leases that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def start_fake_server(delay_s: float = 0.0, clock=time.monotonic, **settings) -> ServerThread:
    options = dict(token=TOKEN, reaper_interval_s=0.2)
    options.update(settings)
    return ServerThread(make_app(Settings(**options), lambda: fake_engine(delay_s), clock=clock))


def start_serve_process(port: int, env: dict, options: Sequence[str] = ()) -> subprocess.Popen:
    """The real `ibisagent serve` (its default heuristic policy and sitk tool, plus ``options``)
    in a child process whose output is piped; returns once it says it is ready."""
    command = [sys.executable, "-m", "ibisagent.cli", "serve", "--port", str(port), "--token", TOKEN,
               "--log-level", "warning", *options]
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
