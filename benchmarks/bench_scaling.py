"""How the cost grows: with the length of a session, the number of concurrent clients, and the
size of the volume a slice is taken from.

- ``history``: per-step cost by step index 1..20 of one session at 512 px: the CPU tool's
  `predict` (all clicks so far are re-sent every step) and the server's overhead (instant fakes
  from benchmarks/bench_server.py). ``growth`` = median of steps 16-20 / median of steps 1-5
  (1.0 = no growth with history).
- ``clients``: 1..8 clients, each with its own session on one server running the real CPU tool
  (`sitk`, 512 px MNI152 slice), each clicking where the simulated annotator would (apply only:
  the tool's cost, the agent's proposals excluded). Two loads: back-to-back clicks (closed loop,
  the worst case) and a click every ``think`` seconds (a person). Reported: throughput (clicks/s)
  and p95 latency per click, and p95 / the single-client median.
- ``volumes``: taking the worked slice out of a volume node (Red, Green and Yellow views) for
  volumes of growing size, against ``np.copy`` of the same slice from a plain array.

    python benchmarks/bench_scaling.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence

import bench_common as common
import numpy as np
from bench_common import format_table, square_case, stats, time_calls

from ibisagent.annotator import next_click
from ibisagent.clicks import Click
from ibisagent.episode import Episode
from ibisagent.policies.simulated import SimulatedPolicy
from ibisagent.segmenters import build_segmenter

HISTORY_STEPS = 20


def _growth(per_step: Sequence[float]) -> float:
    early, late = np.median(per_step[:5]), np.median(per_step[-5:])
    return round(float(late / early), 3) if early > 0 else float("nan")


def history(tool: str = "sitk", size: int = 512, episodes: int = 2) -> Dict:
    """Per-step tool and server time by step index."""
    import bench_server

    from ibisagent.client import AgentClient

    by_step_tool: List[List[float]] = [[] for _ in range(HISTORY_STEPS)]
    segmenter = build_segmenter(tool)
    for tissue in ("white", "grey", "brain")[:episodes]:
        image, truth = square_case(size, tissue)
        episode = Episode(image, segmenter, SimulatedPolicy(truth), max_steps=HISTORY_STEPS)
        for index, step in enumerate(episode.run().steps):
            by_step_tool[index].append(step.seconds)
    by_step_server: List[List[float]] = [[] for _ in range(HISTORY_STEPS)]
    server, thread, url = bench_server.start_server()
    try:
        with AgentClient(url, token=bench_server.TOKEN) as client:
            for _ in range(episodes * 2):
                with client.open_session(bench_server.slice_image(size), "bench", max_steps=HISTORY_STEPS) as session:
                    for index in range(HISTORY_STEPS):
                        started = time.perf_counter()
                        proposal = session.propose()
                        step = session.apply([Click.from_dict(proposal["click"])])
                        by_step_server[index].append(time.perf_counter() - started - step["seconds"])
    finally:
        server.should_exit = True
        thread.join(10)
    rows = []
    for index in range(HISTORY_STEPS):
        if not by_step_tool[index]:
            continue
        rows.append({"step": index + 1, "tool_ms": round(float(np.median(by_step_tool[index])) * 1000, 3),
                     "server_ms": round(float(np.median(by_step_server[index])) * 1000, 3)})
    return {"tool": tool, "size": size, "rows": rows,
            "tool_growth": _growth([r["tool_ms"] for r in rows]),
            "server_growth": _growth([r["server_ms"] for r in rows])}


def _client_loop(url: str, token: str, image, truth, clicks: int, think: float, out: List[float],
                 errors: List[str], start: threading.Barrier) -> None:
    from ibisagent.client import AgentClient

    try:
        with AgentClient(url, token=token, timeout=120) as client:
            with client.open_session(image, "Segment the white matter.", max_steps=clicks + 1) as session:
                start.wait()
                done: List[tuple] = []
                for _ in range(clicks):
                    click = next_click(truth, session.mask, done)
                    if click is None:
                        break
                    x, y, positive = click
                    done.append((x, y))
                    began = time.perf_counter()
                    session.apply([Click(x, y, positive)])
                    out.append(time.perf_counter() - began)
                    if think:
                        time.sleep(think)
    except Exception as error:  # noqa: BLE001 - reported in the results, never hidden
        errors.append(f"{type(error).__name__}: {error}")


def clients(counts: Sequence[int] = (1, 2, 4, 8), tool: str = "sitk", size: int = 512, clicks: int = 5,
            thinks: Sequence[float] = (0.0, 1.0)) -> Dict:
    from ibisagent.policies import build_policy
    from ibisagent.server.worker import Engine

    image, truth = square_case(size)
    context, token = common.serve(lambda: Engine(build_policy("heuristic"), build_segmenter(tool)))
    rows = []
    with context as server:
        for think in thinks:
            single = None
            for count in counts:
                latencies: List[float] = []
                errors: List[str] = []
                barrier = threading.Barrier(count)
                threads = [threading.Thread(target=_client_loop, args=(server.url, token, image, truth, clicks, think,
                                                                        latencies, errors, barrier))
                           for _ in range(count)]
                started = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                wall = time.perf_counter() - started
                figures = stats(latencies)
                if count == counts[0]:
                    single = figures["median_ms"]
                rows.append({"think_s": think, "clients": count, "clicks_per_s": round(len(latencies) / wall, 2),
                             **figures, "p95_x_single": round(figures["p95_ms"] / single, 2) if single else None,
                             "errors": len(errors)})
                if errors:
                    print(f"  clients={count}: {errors[0]}")
    return {"tool": tool, "size": size, "clicks": clicks, "rows": rows}


def volumes(sides: Sequence[int] = (128, 256, 512), depth: int = 64, repeats: int = 5) -> Dict:
    from bench_latency import open_scene

    rows: List[dict] = []
    scene = open_scene()
    if scene is None:
        return {"rows": rows}
    with scene as mrml:
        from IBISAgentLib.slice_geometry import slice_array, slice_geometry
        from slicer_scene import add_volume, make_ijk_to_ras, place_view_on_voxel

        for side in sides:
            array = np.random.default_rng(0).integers(0, 1000, (depth, side, side)).astype(np.int16)
            volume = add_volume(mrml, array, make_ijk_to_ras(np.eye(3)), name=f"v{side}")
            baseline = stats(time_calls(lambda: np.copy(array[depth // 2]), repeats * 4))
            for view in ("Red", "Green", "Yellow"):
                place_view_on_voxel(mrml, view, volume, (side // 2, side // 2, depth // 2))
                geometry = slice_geometry(volume, view, mrml)
                figures = stats(time_calls(lambda: slice_array(volume, geometry), repeats))
                rows.append({"volume": f"{side}x{side}x{depth}", "mvoxels": round(side * side * depth / 1e6, 2),
                             "view": view, **figures,
                             "x_copy": round(figures["median_ms"] / baseline["median_ms"], 1)})
            mrml.RemoveNode(volume)
    return {"depth": depth, "rows": rows}


def run(quick: bool = False) -> Dict:
    return {
        "history": history(episodes=1 if quick else 3),
        "clients": clients(clicks=3 if quick else 10, thinks=(0.0, 0.5 if quick else 1.0)),
        "volumes": volumes((64, 128, 256) if quick else (128, 256, 512), depth=32 if quick else 128,
                           repeats=3 if quick else 10),
    }


def print_tables(result: Dict) -> None:
    h = result["history"]
    print(format_table(h["rows"], ("step", "tool_ms", "server_ms"),
                       f"cost by step index ({h['tool']}, {h['size']} px): growth steps 16-20 / 1-5: tool "
                       f"{h['tool_growth']}, server {h['server_growth']}"))
    c = result["clients"]
    print(format_table(c["rows"], ("think_s", "clients", "clicks_per_s", "median_ms", "p95_ms", "p95_x_single", "errors"),
                       f"\nconcurrent clients ({c['tool']}, {c['size']} px, {c['clicks']} clicks each)"))
    print(format_table(result["volumes"]["rows"], ("volume", "mvoxels", "view", "median_ms", "p95_ms", "x_copy"),
                       "\nslice extraction from a volume node"))


def plot(result: Dict, out_dir: str) -> List[str]:
    paths = []
    figure, axes = common.new_figure()
    rows = result["history"]["rows"]
    axes.plot([r["step"] for r in rows], [r["tool_ms"] for r in rows], marker="o", label=f"{result['history']['tool']} predict")
    axes.plot([r["step"] for r in rows], [r["server_ms"] for r in rows], marker="s", label="server overhead")
    axes.set_xlabel("step index in the session")
    axes.set_ylabel("median ms")
    axes.set_ylim(bottom=0)
    axes.set_title("Cost per step versus history length (512 px)")
    axes.legend()
    paths.append(common.save_figure(figure, "scaling_history.png", out_dir))
    figure, axes = common.new_figure()
    for think in sorted({r["think_s"] for r in result["clients"]["rows"]}):
        part = [r for r in result["clients"]["rows"] if r["think_s"] == think]
        axes.plot([r["clients"] for r in part], [r["p95_ms"] for r in part], marker="o",
                  label=f"p95, a click every {think:g} s" if think else "p95, back-to-back clicks")
    axes.set_xlabel("concurrent clients")
    axes.set_ylabel("ms per click")
    axes.set_title(f"Click latency under concurrent clients ({result['clients']['tool']})")
    axes.legend()
    paths.append(common.save_figure(figure, "scaling_clients.png", out_dir))
    return paths


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    result = run(args.quick)
    print_tables(result)
    common.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
