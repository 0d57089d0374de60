"""What the agent server itself costs per step, apart from the models.

Runs a real server (uvicorn on 127.0.0.1, in a thread of this process) with an instant policy
and an instant tool, and drives it with the real client through interactive steps on a 512x512
slice: propose, then apply the proposed click. Reported per step:

- overhead: wall time of propose + apply at the client, minus the tool's own compute time as
  the server measured it. The fake policy renders the model overlay (IBISAgent's green blend) and
  that time is *counted as overhead*, so the figure covers transport, JSON, mask encoding and
  decoding, session bookkeeping and overlay rendering.
- bytes: HTTP request + response bytes (framing included) of propose + apply, against the raw
  mask (512 * 512 bytes).
- uploads: image uploads per session (must be 1).

Baselines measured in the same run: an empty HTTP round trip (GET /health through the same
client connection) and `np.copy` of the mask.

    python benchmarks/bench_server.py [--steps 200] [--size 512]

Goals (issue 4): median overhead <= 15 ms; bytes per step <= raw mask / 20.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time

import numpy as np
import uvicorn
from ibisagent import protocol
from ibisagent.actions import POSITIVE, Action, format_response
from ibisagent.client import AgentClient
from ibisagent.imaging import overlay
from ibisagent.policies.base import Observation, Policy
from ibisagent.segmenters.base import Prediction, Segmenter
from ibisagent.server.app import make_app
from ibisagent.server.settings import Settings
from ibisagent.engine import Engine

TOKEN = "bench-token"
RADIUS = 24


class OverlayPolicy(Policy):
    """Renders the overlay a real policy would see, then clicks a random pixel of the target."""

    name = "bench"
    description = "benchmark policy: overlay + random click in the target"

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def respond(self, observation: Observation) -> str:
        overlay(observation.image, observation.mask)
        target = np.argwhere(observation.image[..., 0] > 127)
        row, col = target[self.rng.integers(len(target))]
        rows, cols = observation.mask.shape
        return format_response("bench", Action(POSITIVE, (col + 0.5) / cols, (row + 0.5) / rows))


class DiskTool(Segmenter):
    """Paints a disk around the newest click: a realistic small change per step."""

    name = "disk"
    description = "benchmark tool"

    def _embed(self, image: np.ndarray) -> object:
        return image.shape[:2]

    def _predict(self, image_state, clicks, prior_mask, prior_state) -> Prediction:
        mask = np.zeros(image_state, bool) if prior_mask is None else prior_mask.copy()
        click = clicks[-1]
        top, left = max(click.y - RADIUS, 0), max(click.x - RADIUS, 0)
        yy, xx = np.ogrid[top:click.y + RADIUS + 1, left:click.x + RADIUS + 1]
        box = mask[top:click.y + RADIUS + 1, left:click.x + RADIUS + 1]
        box[(yy - click.y) ** 2 + (xx - click.x) ** 2 <= RADIUS ** 2] = True
        return Prediction(mask, None, 1.0)


def slice_image(size: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    yy, xx = np.ogrid[:size, :size]
    grey = rng.integers(0, 90, (size, size)).astype(np.uint8)
    grey[(yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= (size // 4) ** 2] += 120
    return np.repeat(grey[:, :, None], 3, axis=2)


def start_server():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = make_app(Settings(token=TOKEN), lambda: Engine(OverlayPolicy(), DiskTool()))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not (server.started and app.state.ibis.workers.ready):
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{port}"


def median_ms(values) -> float:
    return statistics.median(values) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    server, thread, url = start_server()
    image = slice_image(args.size)
    raw_mask_bytes = args.size * args.size
    overheads, step_bytes, uploads, upload_bytes = [], [], [], []
    with AgentClient(url, token=TOKEN) as client:
        for _ in range(20):  # warm-up: connection, imports, JIT-free but cache-warming
            client.call("GET", protocol.HEALTH)
        empty = []
        for _ in range(200):
            started = time.perf_counter()
            client.call("GET", protocol.HEALTH)
            empty.append(time.perf_counter() - started)
        mask = np.zeros((args.size, args.size), bool)
        copies = []
        for _ in range(200):
            started = time.perf_counter()
            np.copy(mask)
            copies.append(time.perf_counter() - started)
        done = 0
        while done < args.steps:
            before = client.traffic()
            session = client.open_session(image, "bench", max_steps=1000)
            after = client.traffic()
            upload_bytes.append(after["sent"] - before["sent"])
            for _ in range(min(20, args.steps - done)):
                before = client.traffic()
                started = time.perf_counter()
                proposal = session.propose()
                step = session.apply([proposal.click])
                wall = time.perf_counter() - started
                after = client.traffic()
                overheads.append(wall - step.seconds)
                step_bytes.append(after["sent"] - before["sent"] + after["received"] - before["received"])
                done += 1
            uploads.append(session.uploads)
            session.close()
    server.should_exit = True
    thread.join(10)

    overhead_ms = median_ms(overheads)
    p90 = float(np.percentile(overheads, 90)) * 1000.0
    bytes_median = statistics.median(step_bytes)
    print(f"agent server overhead, {args.size}x{args.size} slice, {len(overheads)} steps (propose + apply), "
          f"instant fake policy/tool, loopback")
    print(f"  baseline empty HTTP round trip (GET /health): median {median_ms(empty):.3f} ms")
    print(f"  baseline np.copy of the mask:                 median {median_ms(copies) * 1000:.1f} us")
    print(f"  overhead per step: median {overhead_ms:.2f} ms, p90 {p90:.2f} ms "
          f"(= {overhead_ms / median_ms(empty):.1f} empty round trips; goal <= 15 ms: "
          f"{'PASS' if overhead_ms <= 15 else 'FAIL'})")
    print(f"  bytes per step (request + response): median {bytes_median:.0f}, max {max(step_bytes)} "
          f"(= 1/{raw_mask_bytes / bytes_median:.0f} of the raw mask {raw_mask_bytes}; goal <= 1/20: "
          f"{'PASS' if bytes_median <= raw_mask_bytes / 20 else 'FAIL'})")
    print(f"  image uploads per session: {sorted(set(uploads))} ({len(uploads)} sessions), "
          f"upload {statistics.median(upload_bytes):.0f} bytes vs raw image {raw_mask_bytes * 3}")


if __name__ == "__main__":
    main()
