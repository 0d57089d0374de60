"""The CPU benchmark suite in one command: latency breakdown, scaling, memory and quality.

Prints one table per part and a goals summary, writes ``results/benchmarks.json`` and PNG plots
to ``results/`` (git-ignored), and with ``--figures`` copies the plots to ``figures/`` (the ones
benchmarks/README.md shows).

    python benchmarks/run_benchmarks.py --quick            # under 3 minutes on a 2-core VM
    python benchmarks/run_benchmarks.py                    # the full suite (about 15-25 minutes)
    python benchmarks/run_benchmarks.py --quick --only latency scaling --figures

Goals checked (issue 6), all on figures measured in the same run: server overhead per step
<= 15 ms median at 512 px; default CPU tool <= 150 ms per click at 512 px; one embedding per
image; p95 under 8 concurrent clients <= 3x the single-client median.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from typing import Dict, List, Optional

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "2")

import bench_common as common  # noqa: E402
import bench_latency  # noqa: E402
import bench_memory  # noqa: E402
import bench_quality  # noqa: E402
import bench_scaling  # noqa: E402
from bench_common import format_table  # noqa: E402

PARTS = ("latency", "scaling", "memory", "quality")


def _find(rows: List[Dict], **match) -> Optional[Dict]:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def goals(results: Dict) -> List[Dict]:
    """Each goal with its measured value and PASS/FAIL (or n/a when its part was not run)."""
    checks = []
    latency = results.get("latency")
    if latency and 512 in latency["sizes"]:
        step = _find(latency["rows"], size=512, part="server step")
        empty = _find(latency["rows"], size=512, part="http empty")
        click = _find(latency["rows"], size=512, part="graphcut click")
        checks.append({"goal": "server overhead per step, median at 512 px <= 15 ms",
                       "value": f"{step['median_ms']:.2f} ms (= {step['median_ms'] / empty['median_ms']:.1f} empty round trips)",
                       "ok": step["median_ms"] <= 15})
        if click:
            checks.append({"goal": "default CPU tool (graphcut) per click at 512 px <= 150 ms",
                           "value": f"{click['median_ms']:.1f} ms median, p95 {click['p95_ms']:.1f}",
                           "ok": click["median_ms"] <= 150})
            checks.append({"goal": "no recomputed embeddings (set_image work per episode == 1)",
                           "value": str(click.get("embeddings")), "ok": click.get("embeddings") == 1})
    scaling = results.get("scaling")
    if scaling:
        rows = scaling["clients"]["rows"]
        for think in sorted({r["think_s"] for r in rows}):
            top = max((r for r in rows if r["think_s"] == think), key=lambda r: r["clients"])
            label = f"human-paced, a click about every {think:g} s" if think else "back-to-back clicks"
            checks.append({"goal": f"p95 with {top['clients']} clients <= 3x single-client median ({label})",
                           "value": f"{top['p95_x_single']}x", "ok": (top["p95_x_single"] or 99) <= 3})
        history = scaling["history"]
        checks.append({"goal": "cost does not grow with history (steps 16-20 / 1-5 <= 1.5)",
                       "value": f"tool {history['tool_growth']}, server {history['server_growth']}",
                       "ok": max(history["tool_growth"], history["server_growth"]) <= 1.5})
    for check in checks:
        check["result"] = "PASS" if check["ok"] else "FAIL"
    return checks


def machine() -> Dict:
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine()}


def run(quick: bool, only: List[str], out_dir: str) -> Dict:
    results: Dict = {"quick": quick, "machine": machine(), "seconds": {}}
    plots: List[str] = []
    for part in only:
        started = time.perf_counter()
        print(f"\n== {part} ==", flush=True)
        if part == "latency":
            results[part] = bench_latency.run(common.SIZES, ("graphcut",) if quick else ("graphcut", "growcut"), quick)
            print(format_table(results[part]["rows"], bench_latency.COLUMNS + ("embeddings",), "per-step latency"))
            plots += bench_latency.plot(results[part], out_dir)
        elif part == "scaling":
            results[part] = bench_scaling.run(quick)
            bench_scaling.print_tables(results[part])
            plots += bench_scaling.plot(results[part], out_dir)
        elif part == "memory":
            results[part] = bench_memory.run(bench_memory.QUICK_TOOLS if quick else bench_memory.FULL_TOOLS)
            bench_memory.print_table(results[part])
        elif part == "quality":
            starts = ("scratch", "cut") if quick else bench_quality.STARTS
            results[part] = bench_quality.run(bench_quality.TOOLS, starts, quick)
            print(format_table(results[part]["rows"], bench_quality.COLUMNS,
                               f"quality, {len(results[part]['cases'])} MNI152 slices, {bench_quality.CLICKS} clicks"))
            plots += bench_quality.plot(results[part], out_dir)
        results["seconds"][part] = round(time.perf_counter() - started, 1)
    results["goals"] = goals(results)
    results["plots"] = [os.path.basename(p) for p in plots]
    return results


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the short suite (under 3 minutes on 2 cores)")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="run only these parts")
    parser.add_argument("--out", default=common.RESULTS_DIR, help="folder for JSON and PNGs (default: %(default)s)")
    parser.add_argument("--figures", action="store_true", help="also copy the plots to benchmarks/figures/")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    results = run(args.quick, args.only, args.out)
    results["total_s"] = round(time.perf_counter() - started, 1)
    print(format_table(results["goals"], ("goal", "value", "result"), "\n== goals =="))
    print(f"total {results['total_s']:.0f} s; parts: {results['seconds']}")
    name = "benchmarks_quick.json" if args.quick else "benchmarks.json"
    with open(os.path.join(args.out, name), "w") as handle:
        json.dump(results, handle, indent=2)
    print(f"wrote {os.path.join(args.out, name)} and {len(results['plots'])} plots")
    if args.figures:
        os.makedirs(common.FIGURES_DIR, exist_ok=True)
        for plot in results["plots"]:
            shutil.copy(os.path.join(args.out, plot), os.path.join(common.FIGURES_DIR, plot))
        print(f"copied the plots to {common.FIGURES_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
