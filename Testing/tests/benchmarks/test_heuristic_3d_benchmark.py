"""Smoke test of the 3D no-harm benchmark: it runs the 3D session (the code path of `ibisagent
continue` without --plane) on a real volume and reports well-formed rows. No figure is asserted
beyond the row's own consistency."""

from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

pytest.importorskip("nilearn", reason="the benchmark uses the MNI152 volumes (the 'demo' extra)")

import heuristic_3d  # noqa: E402


def test_the_3d_no_harm_benchmark_runs_on_a_real_volume():
    lines = []
    rows = heuristic_3d.run(devset=None, steps=2, looks=1, tissues=("brain",), log=lines.append)
    assert [(r.case, r.scenario) for r in rows] == [("mni152_brain", "truth")]
    row = rows[0]
    assert row.start_dice == 1.0 and 0.0 <= row.end_dice <= 1.0 and row.steps <= 2 and row.looked >= 1
    assert lines and "no harm" in heuristic_3d.summary(rows)[0]
