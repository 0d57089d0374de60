"""The heuristic policy on real images of every modality: a small dev-set subset (the first two
cases of each group by name) through benchmarks/heuristic_devset.py, graphcut tool, 8 steps, from
the expert mask, from the dev set's degraded start and from a nearly right mask (``near``: the
expert outline moved by about 1.5 pixels, what a 3D review meets on every slice).

Measured on this subset (18 cases) after issue 19: every expert mask and every nearly right mask
left as it was; degraded starts 0.738 -> 0.738 on average (no click passed), none lower. The
policy before issue 19 failed both tests here: it lowered a CT tumour's degraded start by 0.19
and a nearly right brain tumour mask by 0.11. The full table, with the two held-out halves and
the other stress starts, comes from the benchmark (``--stress``).
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
import heuristic_devset as bench

if not os.path.isdir(os.path.join(bench.DEFAULT_DEVSET, "images")):
    pytest.skip(f"the dev set is not at {bench.DEFAULT_DEVSET} (it lives outside the repository)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def rows():
    by_group = defaultdict(list)
    for name, *_ in bench.pairs_of(bench.DEFAULT_DEVSET):
        by_group[name.split("_", 1)[0]].append(name)
    subset = [name for names in by_group.values() for name in sorted(names)[:2]]
    scenarios = ("truth", "initial", "near")
    return bench.run(bench.DEFAULT_DEVSET, steps=8, workers=1, only=subset, scenarios=scenarios)


def test_correct_and_nearly_correct_masks_are_left_alone(rows):
    truth = [r for r in rows if r.scenario == "truth"]
    near = [r for r in rows if r.scenario == "near"]
    assert len(truth) >= 16 and len(near) == len(truth)
    assert all(r.end_iou >= bench.KEPT_IOU for r in truth), [(r.case, r.end_iou) for r in truth]
    lowered = [(r.case, r.start_iou, r.end_iou) for r in near if r.end_iou < r.start_iou - 0.01]
    assert not lowered, lowered


def test_degraded_starts_are_not_made_worse(rows):
    degraded = [r for r in rows if r.scenario == "initial"]
    assert np.mean([r.end_iou for r in degraded]) >= np.mean([r.start_iou for r in degraded])
    lowered = [(r.case, r.start_iou, r.end_iou) for r in degraded if r.end_iou < r.start_iou - 0.02]
    assert not lowered, lowered


def test_every_case_has_a_half_and_each_half_holds_every_group(rows):
    halves = {r.case: r.half for r in rows}
    assert set(halves.values()) == {"A", "B"}
    groups = {half: {case.split("_", 1)[0] for case, h in halves.items() if h == half} for half in "AB"}
    assert groups["A"] == groups["B"]
