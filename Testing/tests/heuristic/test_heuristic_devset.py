"""The heuristic policy on real images of every modality: a small dev-set subset (the first two
cases of each group by name) through benchmarks/heuristic_devset.py, graphcut tool, 8 steps.

Measured on this subset (18 cases): 17 truth starts kept at IoU 1.000, one chest X-ray lowered
to 0.873; degraded starts mean IoU 0.738 -> 0.727 (one CT tumour lost 0.19, the other 17 left
as they were: on this subset no click passes the look-ahead where it would help). The
thresholds leave a margin around those figures; the full table comes from the benchmark.
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
    return bench.run(bench.DEFAULT_DEVSET, steps=8, workers=1, only=subset)


def test_correct_expert_masks_stay_correct(rows):
    truth = [r for r in rows if r.scenario == "truth"]
    assert len(truth) >= 16
    damaged = [(r.case, r.end_iou) for r in truth if r.end_iou < 0.95]
    assert len(damaged) <= 1 and all(iou >= 0.8 for _, iou in damaged), damaged


def test_degraded_starts_are_not_much_worse_on_average_and_rarely_worse(rows):
    degraded = [r for r in rows if r.scenario == "initial"]
    start = np.mean([r.start_iou for r in degraded])
    end = np.mean([r.end_iou for r in degraded])
    assert end >= start - 0.02, (start, end)
    assert sum(r.end_iou < r.start_iou - 0.02 for r in degraded) <= 2
    assert all(r.end_iou >= r.start_iou - 0.3 for r in degraded)
