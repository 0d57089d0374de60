"""Smoke test of benchmarks/compare_classical_tools.py on a tiny dev-set-shaped folder of synthetic
cases: it runs both scenarios end to end and prints every group and the overall row per tool."""

from __future__ import annotations

import os
import sys

import numpy as np
from PIL import Image

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

import compare_classical_tools  # noqa: E402

from ibisagent import image_io  # noqa: E402


def write_devset(folder, names):
    """images/, masks/, initial/ of bright disks on a dark background, one per name."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:48, :48]
    for sub in ("images", "masks", "initial"):
        os.makedirs(folder / sub)
    for index, name in enumerate(names):
        truth = (rows - 24) ** 2 + (cols - 20 - index) ** 2 <= 12 ** 2
        grey = np.clip(np.where(truth, 180.0, 60.0) + rng.normal(0, 6, truth.shape), 0, 255).astype(np.uint8)
        Image.fromarray(grey).save(folder / "images" / f"{name}.png")
        image_io.write_mask(str(folder / "masks" / f"{name}.png"), truth)
        image_io.write_mask(str(folder / "initial" / f"{name}.png"), (rows - 24) ** 2 + (cols - 20 - index) ** 2 <= 9 ** 2)


def test_both_scenarios_print_every_group_and_overall(tmp_path, capsys):
    write_devset(tmp_path, ["aa_1", "aa_2", "bb_1"])
    args = ["--devset", str(tmp_path), "--tools", "graphcut", "watershed", "--clicks", "2", "--workers", "1"]
    assert compare_classical_tools.main(args) == 0
    out = capsys.readouterr().out
    scratch, continued = out.split("\ncontinue:")
    for text in (scratch, continued):
        for group, cases in (("aa", 2), ("bb", 1), ("all", 3)):
            for tool in ("graphcut", "watershed"):
                assert any(line.split()[:3] == [group, tool, str(cases)] for line in text.splitlines()), (group, tool)
        assert "graphcut meets the targets" in text
    assert "start" in continued.splitlines()[1] and "start" not in scratch.split("\nscratch:")[1].splitlines()[1]


def test_target_misses_name_the_group_and_the_better_peer():
    def summary(noc, miou):
        figures = {"noc@85": noc, "miou@5": miou}
        return {**figures, "groups": {"ct": dict(figures), "us": {"noc@85": noc + 3, "miou@5": miou}}}

    summaries = {"graphcut": summary(5.0, 0.8), "growcut": summary(6.0, 0.7), "watershed": summary(6.0, 0.7)}
    summaries["watershed"]["groups"]["us"] = {"noc@85": 4.0, "miou@5": 0.9}
    assert compare_classical_tools.target_misses(summaries) == [
        "us: NoC@85 8.00 > 4.00 (watershed), mIoU@5 0.800 < 0.900 (watershed)"]
    assert compare_classical_tools.target_misses({"graphcut": summaries["graphcut"]}) is None


def test_a_missing_devset_is_skipped_with_a_message(tmp_path, capsys):
    assert compare_classical_tools.main(["--devset", str(tmp_path / "absent")]) == 0
    assert "Skipped: the dev set is not there (images/, masks/, initial/ missing" in capsys.readouterr().out
