"""Issue 17's rules on the whole-volume path of `ibisagent continue` (no ``--plane``: the agent
works the volume in 3D), on real files: a damaged input, NaN in a mask, a mask on another grid and
a volume above the memory budget are refused in one line before any work, and a label map keeps
every other label, its values and its data type (`ibisagent.label_mask`, as ``--plane`` and
``propagate`` do)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import SimpleITK as sitk
from user_files import binary_mask, label_mask, volume

from ibisagent import memory
from ibisagent.cli import main

CONTINUE = ["continue", "--request", "Segment the ball.", "--max-steps", "2"]


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1, captured.err
    assert "Proposals by" not in captured.out  # refused before the agent started
    return captured.err


@pytest.mark.parametrize("damaged", ["image", "mask"])
def test_a_truncated_volume_or_mask_is_refused(tmp_path, capsys, damaged):
    image = volume(tmp_path, ".nii.gz")
    mask = binary_mask(tmp_path, image, "mask.nii.gz")
    path = image if damaged == "image" else mask
    data = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])
    code = main(CONTINUE + ["--image", image, "--mask", mask, "--out", str(tmp_path / "o.nii.gz")])
    assert code == 2 and "damaged" in _one_line_error(capsys)
    assert not (tmp_path / "o.nii.gz").exists()


def test_a_label_map_keeps_the_other_labels_its_values_and_data_type(tmp_path, capsys):
    image = volume(tmp_path)
    mask = label_mask(tmp_path, image, dtype=np.int16)
    before = sitk.GetArrayFromImage(sitk.ReadImage(mask))
    out = str(tmp_path / "out.nrrd")
    command = CONTINUE + ["--image", image, "--mask", mask, "--out", out]
    assert main(command) == 2 and "several labels (1, 2, 3, 4)" in _one_line_error(capsys)
    assert main(command + ["--label", "1"]) == 0, capsys.readouterr().err
    written = sitk.ReadImage(out)
    after = sitk.GetArrayFromImage(written)
    assert written.GetPixelID() == sitk.sitkInt16
    source = sitk.ReadImage(mask)
    for read in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(written, read)() == pytest.approx(getattr(source, read)())
    for label in (2, 3, 4):
        assert np.array_equal(after == label, before == label)
    assert set(np.unique(after[after != before])) <= {0, 1}
    log = json.loads((tmp_path / "out.steps.json").read_text())
    assert log["label"] == 1 and log["locked_voxels"] == int(((before != 0) & (before != 1)).sum())
    assert log["left_to_other_labels"] == 0  # locked voxels are never taken, so nothing is left to them


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_nan_in_a_mask_is_refused(tmp_path, capsys, suffix):
    image = volume(tmp_path)
    values = (sitk.GetArrayFromImage(sitk.ReadImage(label_mask(tmp_path, image))) == 1).astype(np.float32)
    values[8, 0, 0] = np.nan
    mask = sitk.GetImageFromArray(values)
    mask.CopyInformation(sitk.ReadImage(image))
    sitk.WriteImage(mask, str(tmp_path / f"nan{suffix}"))
    code = main(CONTINUE + ["--image", image, "--mask", str(tmp_path / f"nan{suffix}"), "--out", str(tmp_path / "o.nrrd")])
    assert code == 2 and "NaN" in _one_line_error(capsys) and not (tmp_path / "o.nrrd").exists()


def test_a_mask_on_another_grid_is_refused_with_both_geometries(tmp_path, capsys):
    image = volume(tmp_path)
    mask = sitk.ReadImage(binary_mask(tmp_path, image))
    mask.SetOrigin((480.0, 15.0, 40.0))  # the same size, 500 mm away
    sitk.WriteImage(mask, str(tmp_path / "elsewhere.nrrd"))
    for option in ("--mask", "--truth"):
        paths = {"--mask": binary_mask(tmp_path, image), "--truth": binary_mask(tmp_path, image, "truth.nrrd")}
        paths[option] = str(tmp_path / "elsewhere.nrrd")
        code = main(CONTINUE + ["--image", image, "--mask", paths["--mask"], "--truth", paths["--truth"],
                                "--out", str(tmp_path / "o.nrrd")])
        error = _one_line_error(capsys)
        assert code == 2 and "not on the grid" in error
        assert "origin (-20, 15, 40)" in error and "origin (480, 15, 40)" in error
    assert not (tmp_path / "o.nrrd").exists()


def test_the_budget_counts_the_whole_volume_session(tmp_path, capsys, monkeypatch):
    """A volume whose slice work fits the budget but whose whole-volume session does not: the
    slice is worked, the whole volume refused with its size and what to do."""
    image = volume(tmp_path)
    mask = binary_mask(tmp_path, image)
    size = sitk.ReadImage(image).GetSize()
    for_slices = memory.work_bytes(size, 2)
    for_session = memory.work_bytes(size, 2, memory.SESSION3D_BYTES_PER_VOXEL)
    assert for_slices < for_session
    monkeypatch.setenv(memory.BUDGET_ENV, str((for_slices + for_session) / 2 / 2**20))
    assert main(CONTINUE + ["--image", image, "--mask", mask, "--plane", "axial", "--index", "8",
                            "--out", str(tmp_path / "slice.nrrd")]) == 0
    capsys.readouterr()
    assert main(CONTINUE + ["--image", image, "--mask", mask, "--out", str(tmp_path / "o.nrrd")]) == 2
    error = _one_line_error(capsys)
    assert "44 x 40 x 16 voxels" in error and "Crop" in error and "downsample" in error
    assert not (tmp_path / "o.nrrd").exists()
