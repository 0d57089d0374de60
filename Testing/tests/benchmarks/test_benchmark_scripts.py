"""Smoke test of the benchmark scripts: each part of the CPU suite and the GPU script's tiny
path run end to end on tiny inputs and produce well-formed results. No timing is asserted here:
the figures themselves are printed by the scripts (see benchmarks/README.md)."""

from __future__ import annotations

import json
import os
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

pytest.importorskip("fastapi", reason="the benchmarks drive a real server (the 'server' extra)")
pytest.importorskip("nilearn", reason="the benchmarks use the MNI152 sample slices (the 'demo' extra)")

import bench_common  # noqa: E402
import bench_latency  # noqa: E402
import bench_memory  # noqa: E402
import bench_quality  # noqa: E402
import bench_scaling  # noqa: E402
import bench_server_memory  # noqa: E402
import run_benchmarks  # noqa: E402


@pytest.fixture(scope="module")
def cpu_results(tmp_path_factory):
    """One tiny run of every CPU part, as run_benchmarks would assemble it."""
    return {
        "latency": bench_latency.run(sizes=(512,), tools=("graphcut",), quick=True),
        "scaling": {
            "history": bench_scaling.history(size=96, episodes=1),
            "clients": bench_scaling.clients(counts=(1, 2), size=96, clicks=1, thinks=(0.0,)),
            "volumes": bench_scaling.volumes(sides=(32,), depth=8, repeats=1),
        },
        "quality": bench_quality.run(tools=("graphcut",), starts=("scratch",), quick=True),
    }


def test_latency_parts_are_all_measured(cpu_results):
    parts = {row["part"] for row in cpu_results["latency"]["rows"]}
    assert {"baseline np.copy", "policy heuristic", "graphcut embed", "graphcut click", "overlay", "mask delta",
            "http empty", "server step"} <= parts
    click = next(r for r in cpu_results["latency"]["rows"] if r["part"] == "graphcut click")
    assert click["embeddings"] == 1  # the per-click calls reuse the image's embedding
    for row in cpu_results["latency"]["rows"]:  # every part was really timed, at least once
        assert row["n"] >= 1 and row["p95_ms"] >= row["median_ms"] > 0, row


def test_scaling_covers_history_clients_and_volumes(cpu_results):
    scaling = cpu_results["scaling"]
    assert len(scaling["history"]["rows"]) >= 5
    assert [r["clients"] for r in scaling["clients"]["rows"]] == [1, 2]
    assert all(r["errors"] == 0 for r in scaling["clients"]["rows"])
    pytest.importorskip("slicer", reason="the volume part reads slices through slicer-core")
    assert {r["view"] for r in scaling["volumes"]["rows"]} == {"Red", "Green", "Yellow"}


def test_quality_follows_the_eval_protocol(cpu_results):
    row = cpu_results["quality"]["rows"][0]
    assert row["cases"] == len(cpu_results["quality"]["cases"]) > 0
    assert 1 <= row["noc@90"] <= bench_quality.CLICKS
    assert len(cpu_results["quality"]["curves"]["graphcut/scratch"]) == bench_quality.CLICKS


def test_goals_and_plots(cpu_results, tmp_path):
    checks = run_benchmarks.goals(cpu_results)
    assert len(checks) >= 5
    for check in checks:  # the verdict is the goal's own comparison, whichever way it went
        assert check["result"] == ("PASS" if check["ok"] else "FAIL") and check["value"], check
    paths = (bench_latency.plot(cpu_results["latency"], str(tmp_path))
             + bench_scaling.plot(cpu_results["scaling"], str(tmp_path))
             + bench_quality.plot(cpu_results["quality"], str(tmp_path)))
    assert all(os.path.getsize(p) > 1000 for p in paths)
    table = bench_common.format_table(checks, ("goal", "value", "result"))
    for check in checks:  # one line per goal, with its value and verdict
        assert any(check["goal"] in line and check["result"] in line for line in table.splitlines()), check["goal"]


def test_slicer_step_benchmark_measures_steps_and_writes_against_the_old_round_trip():
    pytest.importorskip("slicer", reason="the Slicer-side benchmark runs on slicer-core's MRML scene")
    import bench_slicer_step

    result = bench_slicer_step.run(step_side=32, depths=(4, 12), write_sides=(64,), write_depth=4, steps=4, repeats=3)
    steps = [r for r in result["rows"] if r["part"].startswith("step")]
    writes = [r for r in result["rows"] if r["part"] == "slice write"]
    assert [r["volume"] for r in steps] == ["32x32x4", "32x32x12"] and [r["volume"] for r in writes] == ["64x64x4"]
    for row in result["rows"]:
        assert row["p95_ms"] >= row["median_ms"] > 0 and row["old_write_ms"] > 0, row
    (goal,) = result["goals"]  # the 512 px goal needs a 512 px row; the step ratio is judged on any two depths
    assert goal["result"] == ("PASS" if goal["ok"] else "FAIL") and "32x32x12 / 32x32x4" in goal["goal"]


def test_memory_child_reports_peak_rss():
    row = bench_memory.measure("graphcut", steps=1)
    assert "error" not in row, row
    assert row["peak_mb"] > 10


def test_gpu_script_tiny_path_runs(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("sam2")
    pytest.importorskip("segment_anything")
    import gpu_benchmark

    status = gpu_benchmark.main(["--tiny", "--device", "cpu", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "gpu_benchmark.json").read_text())
    assert status == 0, result["errors"]
    parts = {row["part"] for row in result["rows"]}
    assert {"qwen 2 tokens", "qwen 4 tokens", "sam2 embed", "sam2 click", "sam embed", "sam click"} <= parts
    qwen = [r for r in result["rows"] if r["part"].startswith("qwen ")]
    assert [r["new_tokens"] for r in qwen] == [2, 4]  # generation lengths are forced
    server = next(r for r in result["rows"] if r["part"].startswith("server step"))
    assert server["steps"] == gpu_benchmark.TINY["episode_steps"]


def test_server_memory_benchmark_measures_a_separate_server_process():
    result = bench_server_memory.run(size=96, cycles=2, held=1)
    points = [row["point"] for row in result["rows"]]
    assert points == ["start", "held 1", "held 1 closed", "cycle 1", "cycle 2"]
    assert all(row["rss_mb"] > 0 for row in result["rows"]) and result["peak_mb"] > 0
