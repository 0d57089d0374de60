"""How the cost grows: with the length of a session, the number of concurrent clients, and the
size of the volume a slice is taken from.

- ``history``: per-step cost by step index 1..20 of one session at 512 px: the CPU tool's
  `predict` (all clicks so far are re-sent every step) and the server's overhead (instant fakes
  from benchmarks/bench_server.py). ``growth`` = median of steps 16-20 / median of steps 1-5
  (1.0 = no growth with history).
- ``clients``: 1..8 clients, each with its own session on one server running the CPU defaults
  (heuristic policy, `graphcut` tool, 512 px MNI152 slice), with 2 model workers (the default of
  `ibisagent serve` for these engines on 2+ cores) and with 1. Two steps: ``apply`` (the
  simulated annotator's click: the tool step alone) and ``propose+apply`` (the policy's click,
  then the tool). Two loads: back-to-back clicks (saturation: every client always waiting, the
  worst case) and human-paced (each client clicks about once a second, with a random phase and
  jitter, and never before its last result came back). Reported: throughput (clicks/s), median
  and p95 latency per click, and p95 / the single-client median of the same setting.
- ``volumes``: taking the worked slice out of a volume node (Red, Green and Yellow views) for
  volumes of growing size, against ``np.copy`` of the same slice from a plain array.

    python benchmarks/bench_scaling.py [--quick] [--only history clients volumes] [--json FILE]
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


def history(tool: str = "graphcut", size: int = 512, episodes: int = 2) -> Dict:
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
                        step = session.apply([proposal.click])
                        by_step_server[index].append(time.perf_counter() - started - step.seconds)
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


#: Mean seconds between one person's clicks in the human-paced load.
HUMAN_PERIOD_S = 1.0
STEPS = ("apply", "propose+apply")


def _click(session, truth, done: List[tuple], step: str) -> Optional[float]:
    """One click; returns its latency in seconds (None when the annotator has nothing left).
    ``apply``: the simulated annotator's click, the tool step only. ``propose+apply``: the
    policy proposes and its click is applied (the annotator's click if the policy stops)."""
    began = time.perf_counter()
    click = None
    if step == "propose+apply":
        click = session.propose().click
    if click is None:
        found = next_click(truth, session.mask, done)
        if found is None:
            return None
        click = Click(found[0], found[1], found[2])
    done.append((click.x, click.y))
    session.apply([click])
    return time.perf_counter() - began


def _client_loop(url: str, token: str, image, truth, clicks: int, step: str, period: float, seed: int,
                 out: List[float], errors: List[str], start: threading.Barrier) -> None:
    """One client. ``period`` 0: back-to-back clicks. Otherwise a person: the first click comes
    at a random phase in [0, period), and after each result they look for
    ``period * uniform(0.5, 1.5)`` seconds minus the time the click took, so one click starts
    about every ``period`` seconds while the server keeps up, and never before the last result."""
    from ibisagent.client import AgentClient

    rng = np.random.default_rng(seed)
    try:
        with AgentClient(url, token=token, timeout=120) as client:
            with client.open_session(image, "Segment the white matter.", max_steps=clicks + 1) as session:
                start.wait()
                if period:
                    time.sleep(rng.uniform(0, period))
                done: List[tuple] = []
                for _ in range(clicks):
                    took = _click(session, truth, done, step)
                    if took is None:
                        break
                    out.append(took)
                    if period:
                        time.sleep(max(0.0, period * rng.uniform(0.5, 1.5) - took))
    except Exception as error:  # noqa: BLE001 - reported in the results, never hidden
        errors.append(f"{type(error).__name__}: {error}")


def _load(url: str, token: str, image, truth, count: int, clicks: int, step: str, period: float) -> Dict:
    latencies: List[float] = []
    errors: List[str] = []
    barrier = threading.Barrier(count)
    threads = [threading.Thread(target=_client_loop, args=(url, token, image, truth, clicks, step, period, seed,
                                                            latencies, errors, barrier))
               for seed in range(count)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        print(f"  clients={count}: {errors[0]}")
    return {"clicks_per_s": round(len(latencies) / wall, 2), **stats(latencies), "errors": len(errors)}


def clients(counts: Sequence[int] = (1, 2, 4, 8), tool: str = "graphcut", size: int = 512, clicks: int = 5,
            workers: Sequence[int] = (1,), steps: Sequence[str] = ("apply",),
            thinks: Sequence[float] = (0.0, HUMAN_PERIOD_S)) -> Dict:
    """Rows per (workers, step, load, clients); `run` asks for every step with 2 workers and 1.

    ``think_s`` is the load: 0 for back-to-back clicks, else the mean seconds between one
    client's clicks (human-paced). ``p95_x_single``: the row's p95 over the median of the
    single-client row with the same workers, step and load."""
    from ibisagent.policies import build_policy
    from ibisagent.engine import Engine

    image, truth = square_case(size)
    rows = []
    for count_workers in workers:
        context, token = common.serve(lambda: Engine(build_policy("heuristic"), build_segmenter(tool)),
                                      workers=count_workers)
        with context as server:
            for step in steps:
                for period in thinks:
                    single = None
                    for count in counts:
                        figures = _load(server.url, token, image, truth, count, clicks, step, period)
                        if count == 1:
                            single = figures["median_ms"]
                        rows.append({"workers": count_workers, "step": step, "think_s": period, "clients": count,
                                     **figures,
                                     "p95_x_single": round(figures["p95_ms"] / single, 2) if single else None})
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


PARTS = ("history", "clients", "volumes")


def run(quick: bool = False, parts: Sequence[str] = PARTS) -> Dict:
    jobs = {
        "history": lambda: history(episodes=1 if quick else 3),
        "clients": lambda: clients(counts=(1, 8) if quick else (1, 2, 4, 8), clicks=4 if quick else 10,
                                   workers=(2, 1), steps=STEPS),
        "volumes": lambda: volumes((64, 128, 256) if quick else (128, 256, 512), depth=32 if quick else 128,
                                   repeats=3 if quick else 10),
    }
    return {part: jobs[part]() for part in parts}


def print_tables(result: Dict) -> None:
    h = result.get("history")
    if h:
        print(format_table(h["rows"], ("step", "tool_ms", "server_ms"),
                           f"cost by step index ({h['tool']}, {h['size']} px): growth steps 16-20 / 1-5: tool "
                           f"{h['tool_growth']}, server {h['server_growth']}"))
    c = result.get("clients")
    if c:
        columns = ("workers", "step", "think_s", "clients", "clicks_per_s", "median_ms", "p95_ms", "p95_x_single",
                   "errors")
        print(format_table(c["rows"], columns,
                           f"\nconcurrent clients ({c['tool']}, {c['size']} px, {c['clicks']} clicks each; think_s 0"
                           f" = back-to-back, else about one click per think_s seconds)"))
    if "volumes" in result:
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
    rows = result["clients"]["rows"]
    for workers in sorted({r["workers"] for r in rows}):
        for think in sorted({r["think_s"] for r in rows}):
            part = [r for r in rows if r["workers"] == workers and r["think_s"] == think and r["step"] == "apply"]
            load = f"a click every ~{think:g} s" if think else "back-to-back"
            axes.plot([r["clients"] for r in part], [r["p95_x_single"] for r in part], marker="o",
                      linestyle="-" if think else "--", label=f"{workers} worker{'s' if workers > 1 else ''}, {load}")
    axes.axhline(3, color="grey", linewidth=1)
    axes.set_xlabel("concurrent clients")
    axes.set_ylabel("p95 / single-client median")
    axes.set_title(f"Click latency under concurrent clients ({result['clients']['tool']}, apply)")
    axes.legend()
    paths.append(common.save_figure(figure, "scaling_clients.png", out_dir))
    return paths


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="run only these parts")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    result = run(args.quick, args.only)
    print_tables(result)
    common.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
