"""Memory the agent server holds for its sessions, and whether it gives it back when they close.

A child process runs a real server (uvicorn on 127.0.0.1, the `heuristic` policy and the
`graphcut` tool, one model worker); this process is its client and reads the server's resident
memory (``VmRSS`` of /proc/<pid>/status; the client's own arrays are not counted) at each point:

- ``start``: the server up, one small session opened and closed (imports and first-use
  allocations done): the baseline every other figure is compared with;
- ``held``: ``--held`` sessions on ``--size`` x ``--size`` images opened, one agent step each
  (propose + apply), none closed: ``per_session_mb`` is the growth per session and
  ``bytes_per_pixel`` the same per pixel, what `agent_session.SESSION_BYTES_PER_PIXEL` is set from;
- ``held closed``: the same sessions closed;
- ``cycle N``: ``--cycles`` times open a session, one step, close it; the resident memory after
  cycle N, and the peak (``VmHWM``) over the whole run.

A server that returns memory on close ends the cycles near ``start``; one that does not climbs to
the size of the sessions it once held. Run it on another checkout (PYTHONPATH) to compare.

    python benchmarks/bench_server_memory.py [--size 2000] [--cycles 100] [--held 4] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional

import bench_common as common
from bench_common import format_table


def _status_kb(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def serve(port: int) -> None:
    """Runs in the child process: the server, until it is killed."""
    import uvicorn

    from ibisagent.server.app import make_app
    from ibisagent.server.settings import Settings

    uvicorn.run(make_app(Settings(token=TOKEN, workers=1, max_queue=64)), host="127.0.0.1", port=port,
                log_level="warning")


#: The child server's token (it listens on 127.0.0.1 only, for the length of the run).
TOKEN = "bench-server-memory"
#: Seconds to wait after closing sessions: the server gives their memory back after the reply.
SETTLE_S = 1.0


def run(size: int = 2000, cycles: int = 100, held: int = 4) -> Dict:
    import httpx

    from ibisagent import protocol
    from ibisagent.client import AgentClient

    from server_fakes import free_port

    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", str(port)], env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + protocol.HEALTH, timeout=1).json()["ready"]:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)

        def rss() -> float:
            return round(_status_kb(server.pid, "VmRSS") / 1024.0, 1)

        def step(session) -> None:
            proposal = session.propose()
            if proposal.click is not None:
                session.apply([proposal.click])

        small, _ = common.square_case(128)
        image, _ = common.square_case(size)
        rows: List[Dict] = []
        started = time.perf_counter()
        with AgentClient(url, token=TOKEN, timeout=900, upload_timeout=900) as client:
            with client.open_session(small, "Segment the white matter.") as session:
                step(session)
            time.sleep(SETTLE_S)
            start = rss()
            rows.append({"point": "start", "rss_mb": start, "above_start_mb": 0.0})
            sessions = [client.open_session(image, "Segment the white matter.") for _ in range(held)]
            for session in sessions:
                step(session)
            held_rss = rss()
            per_session = (held_rss - start) / max(held, 1)
            rows.append({"point": f"held {held}", "rss_mb": held_rss, "above_start_mb": round(held_rss - start, 1),
                         "per_session_mb": round(per_session, 1),
                         "bytes_per_pixel": round(per_session * 2**20 / (size * size), 1)})
            for session in sessions:
                session.close()
            del sessions
            time.sleep(SETTLE_S)
            closed = rss()
            rows.append({"point": f"held {held} closed", "rss_mb": closed, "above_start_mb": round(closed - start, 1)})
            marks = {1, 10, 25, 50, cycles}
            for cycle in range(1, cycles + 1):
                with client.open_session(image, "Segment the white matter.") as session:
                    step(session)
                if cycle in marks:
                    time.sleep(SETTLE_S)
                    now = rss()
                    rows.append({"point": f"cycle {cycle}", "rss_mb": now, "above_start_mb": round(now - start, 1)})
        peak = round(_status_kb(server.pid, "VmHWM") / 1024.0, 1)
    finally:
        server.kill()
        server.wait()
    return {"size": size, "cycles": cycles, "held": held, "rows": rows, "peak_mb": peak,
            "seconds": round(time.perf_counter() - started, 1)}


def print_table(result: Dict) -> None:
    print(format_table(result["rows"], ("point", "rss_mb", "above_start_mb", "per_session_mb", "bytes_per_pixel"),
                       f"server RSS, {result['size']} x {result['size']} sessions, one agent step each "
                       f"(peak {result['peak_mb']} MB, {result['seconds']} s)"))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--held", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="256 px, 5 cycles, 2 held sessions")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.cycles, args.held = 256, 5, 2
    if args.serve:
        serve(args.serve)
        return 0
    result = run(args.size, args.cycles, args.held)
    print_table(result)
    common.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
