"""Peak memory (RSS) of the agent server with each tool loaded.

Each tool runs in a fresh child process: a real server (uvicorn on 127.0.0.1 in a thread) with
the `heuristic` policy and that tool, one client session on a 512 px slice, three agent steps
(propose + apply). The child then reports its peak RSS (``VmHWM`` of /proc/self/status; not
``ru_maxrss``, which Linux carries over from the parent through exec). The baseline is the same
child with no session opened (server, client and imports only), so ``tool_mb`` = peak - baseline
is what the tool and its use add.

``sam`` and ``sam2`` have no bundled weights: the full run builds them untrained (SAM ViT-B, SAM2.1
Hiera-T at 1024) from a temporary checkpoint, which has the memory of the real thing.

    python benchmarks/bench_memory.py [--quick] [--tools graphcut growcut litemedsam]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import bench_common as common
from bench_common import format_table

QUICK_TOOLS = ("graphcut", "growcut", "litemedsam")
FULL_TOOLS = QUICK_TOOLS + ("sam", "sam2")


def _random_checkpoint(tool: str, folder: str) -> Dict:
    """Options that build ``tool`` from an untrained checkpoint written into ``folder``."""
    import torch

    path = os.path.join(folder, f"{tool}.pt")
    if tool == "sam":
        from ibisagent.segmenters.sam import build_model

        torch.save(build_model("vit_b").state_dict(), path)
        return {"checkpoint": path, "model_type": "vit_b", "device": "cpu"}
    from sam2.build_sam import build_sam2

    from ibisagent.segmenters.sam2 import DEFAULT_CONFIG

    torch.save({"model": build_sam2(DEFAULT_CONFIG, None, device="cpu").state_dict()}, path)
    return {"config": DEFAULT_CONFIG, "checkpoint": path, "device": "cpu"}


def child(tool: str, steps: int) -> Dict:
    """Runs in the child process: serve, use, and report the peak RSS in MB."""
    from ibisagent.client import AgentClient
    from ibisagent.policies import build_policy
    from ibisagent.segmenters import build_segmenter
    from ibisagent.engine import Engine

    options: Dict = {}
    folder = tempfile.mkdtemp(prefix="ibis-mem-")
    if tool in ("sam", "sam2"):
        options = _random_checkpoint(tool, folder)
    image, _ = common.square_case(512)
    engine = (lambda: Engine(build_policy("heuristic"), build_segmenter(tool, **options))) if tool != "none" else (
        lambda: Engine(build_policy("heuristic"), build_segmenter("graphcut")))
    started = time.perf_counter()
    context, token = common.serve(engine)
    with context as server, AgentClient(server.url, token=token, timeout=600, upload_timeout=600) as client:
        if tool != "none":
            with client.open_session(image, "Segment the white matter.", max_steps=steps + 1) as session:
                for _ in range(steps):
                    proposal = session.propose()
                    if proposal.click is None:
                        break
                    session.apply([proposal.click])
    peak_kb = _peak_rss_kb()
    return {"tool": tool, "peak_mb": round(peak_kb / 1024.0, 1), "seconds": round(time.perf_counter() - started, 1)}


def _peak_rss_kb() -> float:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # macOS: bytes there, close enough


def measure(tool: str, steps: int = 3) -> Dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", tool, "--steps", str(steps)]
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONWARNINGS="ignore")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"tool": tool, "error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def run(tools: Sequence[str] = QUICK_TOOLS, steps: int = 3) -> Dict:
    baseline = measure("none", steps)
    rows = [dict(baseline, tool="baseline (server, no session)", tool_mb=0.0)]
    for tool in tools:
        row = measure(tool, steps)
        if "peak_mb" in row and "peak_mb" in baseline:
            row["tool_mb"] = round(row["peak_mb"] - baseline["peak_mb"], 1)
        rows.append(row)
    return {"steps": steps, "rows": rows}


def print_table(result: Dict) -> None:
    print(format_table(result["rows"], ("tool", "peak_mb", "tool_mb", "seconds", "error"),
                       f"peak RSS of the server process ({result['steps']} agent steps at 512 px)"))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tools", nargs="+")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.steps)))
        return 0
    result = run(args.tools or (QUICK_TOOLS if args.quick else FULL_TOOLS), args.steps)
    print_table(result)
    common.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
