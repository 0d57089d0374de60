"""`ibisagent eval` on real files: the per-group table (summary.json, per_case.csv, printed), no
early stop of the simulated annotator, and the same results with one worker process or two."""

import contextlib
import csv
import io
import json

import numpy as np
import pytest
import SimpleITK as sitk

from ibisagent import image_io
from ibisagent.cli import main
from ibisagent.evaluate import SUMMARY_KEYS
from ibisagent.parallel import usable_cores
from ibisagent.sample_data import mni152_slice, rough_mask

CLICKS = 5


@pytest.fixture(scope="module")
def grouped_folders(tmp_path_factory):
    """Two `ct_` cases, one `us_` case (MNI152 slices standing in) with rough starting masks, and
    a phantom without `_` whose starting mask is already exactly right."""
    root = tmp_path_factory.mktemp("grouped")
    for sub in ("images", "masks", "initial"):
        (root / sub).mkdir()
    for name, (tissue, plane) in {"ct_1": ("brain", "axial"), "ct_2": ("white", "coronal"),
                                  "us_1": ("grey", "sagittal")}.items():
        image, truth = mni152_slice(tissue, plane)
        sitk.WriteImage(sitk.GetImageFromArray(image), str(root / "images" / f"{name}.nii.gz"))
        image_io.write_mask(str(root / "masks" / f"{name}.png"), truth)
        image_io.write_mask(str(root / "initial" / f"{name}.png"), rough_mask(truth, "eroded"))
    rows, cols = np.mgrid[:64, :80]
    disc = (rows - 30) ** 2 + (cols - 40) ** 2 < 15 ** 2
    phantom = sitk.GetImageFromArray(np.where(disc, 200, 40).astype(np.uint8))
    sitk.WriteImage(phantom, str(root / "images" / "phantom.png"))
    image_io.write_mask(str(root / "masks" / "phantom.png"), disc)
    image_io.write_mask(str(root / "initial" / "phantom.png"), disc)
    return root


def _evaluate(folders, out, *extra):
    return main(["eval", "--images", str(folders / "images"), "--masks", str(folders / "masks"),
                 "--initial", str(folders / "initial"), "--clicks", str(CLICKS), "--out", str(out),
                 "--no-progress", *extra])


@pytest.fixture(scope="module")
def runs(grouped_folders, tmp_path_factory):
    """The same evaluation with one worker process and with two: {workers: (out folder, printed)}."""
    done = {}
    for workers in (1, 2):
        out = tmp_path_factory.mktemp(f"workers{workers}") / "eval"
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert _evaluate(grouped_folders, out, "--workers", str(workers)) == 0
        done[workers] = (out, printed.getvalue())
    return done


def _cases(out):
    with open(out / "per_case.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_summary_keeps_its_keys_and_adds_the_groups(runs):
    out, _ = runs[1]
    summary = json.loads((out / "summary.json").read_text())
    assert tuple(summary)[:len(SUMMARY_KEYS)] == SUMMARY_KEYS and summary["cases"] == 4
    assert list(summary["groups"]) == ["ct", "phantom", "us"]
    cases = _cases(out)
    assert [row["group"] for row in cases] == ["ct", "ct", "phantom", "us"]
    for group, values in summary["groups"].items():
        members = [row for row in cases if row["group"] == group]
        assert values["cases"] == len(members)
        assert set(SUMMARY_KEYS) | {"start_iou"} == set(values)
        for key, column in (("start_iou", "start_iou"), ("miou@1", "iou@1"), ("miou@5", "iou@5"),
                            ("dice_final", "dice_final")):
            assert values[key] == pytest.approx(np.mean([float(row[column]) for row in members]), abs=2e-4)
        assert values["noc@85"] == pytest.approx(np.mean([int(row["noc@85"]) for row in members]))
    starts = [float(row["start_iou"]) for row in cases]
    assert summary["start_iou"] == pytest.approx(np.mean(starts), abs=2e-4)


def test_the_printed_table_has_a_row_per_group_then_all(runs):
    _, printed = runs[1]
    lines = printed.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["group", "cases", "start"])
    names = [line.split()[0] for line in lines[header + 1:header + 6]]
    assert names == ["ct", "phantom", "us", "-" * len(lines[header]), "all"]
    assert lines[header + 1].split()[1] == "2" and lines[header + 5].split()[1] == "4"


def test_the_annotator_clicks_the_whole_budget(runs):
    out, _ = runs[1]
    for row in _cases(out):
        curve = [float(row[f"iou@{k}"]) for k in range(1, CLICKS + 1)]
        assert f"iou@{CLICKS + 1}" not in row
        if row["case"] == "phantom":  # exactly right from the start: nothing to click, 1.0 carried
            assert curve == [1.0] * CLICKS and row["stop_reason"] == "terminated"
        else:
            assert row["stop_reason"] == "step-limit" and max(curve) < 1.0


def test_two_workers_give_the_same_results_as_one(runs):
    (one, printed_one), (two, printed_two) = runs[1], runs[2]
    assert "1 worker process." in printed_one and "2 worker processes." in printed_two

    def without_timing(summary):
        summary.pop("seconds_per_click")
        for values in summary["groups"].values():
            values.pop("seconds_per_click")
        return summary

    assert without_timing(json.loads((one / "summary.json").read_text())) == \
        without_timing(json.loads((two / "summary.json").read_text()))
    def cases_without_timing(out):
        return [{k: v for k, v in row.items() if k != "seconds_per_click"} for row in _cases(out)]

    assert cases_without_timing(one) == cases_without_timing(two)
    assert (one / "skipped.txt").read_text() == (two / "skipped.txt").read_text()


def test_workers_default_to_the_usable_cores_and_to_one_with_record(grouped_folders, tmp_path, capsys):
    assert _evaluate(grouped_folders, tmp_path / "auto") == 0
    workers = min(usable_cores(), 4)
    assert f"{workers} worker process{'es' if workers > 1 else ''}." in capsys.readouterr().out
    assert _evaluate(grouped_folders, tmp_path / "recorded", "--record", str(tmp_path / "records")) == 0
    assert "1 worker process." in capsys.readouterr().out
    both = ("--record", str(tmp_path / "r2"), "--workers", "2")
    assert _evaluate(grouped_folders, tmp_path / "both", *both) == 2
    assert "--workers 1" in capsys.readouterr().err


def test_a_bad_tool_option_in_the_workers_is_one_line_error(grouped_folders, tmp_path, capsys):
    assert _evaluate(grouped_folders, tmp_path / "bad", "--workers", "2", "--tool-option", "nonsense=1") == 2
    error = capsys.readouterr().err.strip()
    assert "nonsense" in error and len(error.splitlines()) == 1
    assert _evaluate(grouped_folders, tmp_path / "zero", "--workers", "0") == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
