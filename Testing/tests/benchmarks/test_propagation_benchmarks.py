"""Smoke test of the propagation benchmarks on small inputs: they run end to end through the
eval3d code path and report well-formed tables and goals. No figure is asserted here."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

pytest.importorskip("nilearn", reason="the benchmarks use the MNI152 volumes (the 'demo' extra)")

import bench_common  # noqa: E402
import bench_propagation_speed  # noqa: E402
import propagation_quality  # noqa: E402


def test_quality_benchmark_runs_the_eval3d_protocol_and_both_baselines(tmp_path):
    result = propagation_quality.run(devset=None, clicks=(0, 1), quick=True, out=str(tmp_path))
    assert [c["name"] for c in result["cases"]] == ["mni152_brain"]
    methods = {(r["method"], r["N"]) for r in result["rows"]}
    assert {("propagation", 0), ("propagation", 1), ("copy every slice", "-"),
            ("copy, truth's slices (oracle)", "-"), ("2D continue, each slice alone", 1)} <= methods
    for row in result["rows"]:
        assert 0.0 <= row["dice3d"] <= 1.0
    assert (tmp_path / "mni152_N0" / "summary.json").exists()  # each N is a real eval3d run
    assert any(g["goal"].startswith("N=0 better") for g in result["goals"])
    assert "Goals" in propagation_quality.report(result)


def test_targets_follow_each_case_s_labels():
    labels = np.array([0, 1, 2, 4, 4, 7, 7, 7])
    target, what = bench_common.choose_target("mri_brats2013_x", labels, {})
    assert target.tolist() == (labels > 0).tolist() and "whole tumour" in what
    target, what = bench_common.choose_target("ct_deeplesion_x", labels, {"1": "lesion"})
    assert target.tolist() == (labels == 1).tolist() and what == "lesion"
    target, what = bench_common.choose_target("synthetic_nuclei", labels, {"7": "nucleus 7"})
    assert target.tolist() == (labels == 7).tolist() and "largest" in what


def test_speed_benchmark_measures_both_sides_in_one_run():
    result = bench_propagation_speed.run(slices=6, size=64)
    parts = [row["part"] for row in result["rows"]]
    assert parts[0].startswith("one 2D step") and len(parts) == 4
    for row in result["rows"]:
        assert row["n"] >= 1 and row["median_ms"] > 0
    assert result["goal"]["result"] in ("PASS", "FAIL")
