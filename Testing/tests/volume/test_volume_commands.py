"""`ibisagent propagate` and `ibisagent eval3d` end to end on real files (a synthetic blob volume
written with an oblique-free but flipped, permuted direction, so display orientation matters)."""

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from volume_doubles import blob_volume

from ibisagent import image_io
from ibisagent.cli import main
from ibisagent.evaluate3d import SUMMARY_KEYS, start_slice
from ibisagent.metrics import dice

PLANE = "coronal"


def _write(array_kji, path, reference=None, pixel=sitk.sitkUInt8):
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_kji))
    if reference is not None:
        image.CopyInformation(reference)
    else:
        image.SetDirection((0, 0, 1, -1, 0, 0, 0, 1, 0))
        image.SetSpacing((1.0, 1.2, 0.8))
    sitk.WriteImage(sitk.Cast(image, pixel), str(path))
    return image


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The blob volume laid out so that its slices are the coronal slices of the file."""
    folder = tmp_path_factory.mktemp("volume")
    grey, truth = blob_volume()
    # Build the file, then find how the coronal stack maps to it and place the blob there.
    reference = _write(np.zeros((56, 48, 15), np.uint8), folder / "shape.nrrd")
    stack = image_io.volume_stack(reference, PLANE)
    assert stack.slices.shape == truth.shape
    zero = np.zeros(sitk.GetArrayViewFromImage(reference).shape, bool)
    truth_kji = stack.put(zero, dict(enumerate(truth)))
    grey_kji = np.zeros(zero.shape, np.uint8)
    for bit in range(8):  # put() writes masks: move the grey levels one bit plane at a time
        grey_kji |= stack.put(zero, dict(enumerate((grey >> bit) & 1))).astype(np.uint8) << bit
    image = _write(grey_kji, folder / "image.nrrd", reference)
    _write(truth_kji.astype(np.uint8), folder / "truth.nrrd", image)
    start = start_slice(truth)
    start_kji = stack.put(zero, {start: truth[start], 0: np.ones_like(truth[0])})  # a stray slice outside the range
    _write(start_kji.astype(np.uint8), folder / "start.nrrd", image)
    return folder, truth, start


def _slices(path, plane=PLANE):
    image = sitk.ReadImage(str(path))
    return image_io.volume_stack(image, plane).take(sitk.GetArrayFromImage(image) != 0).astype(bool)


def test_propagate_writes_the_volume_and_a_log_per_slice(files, tmp_path, capsys):
    folder, truth, start = files
    out = tmp_path / "out.nii.gz"
    code = main(["propagate", "--image", str(folder / "image.nrrd"), "--mask", str(folder / "start.nrrd"),
                 "--plane", PLANE, "--index", str(start), "--range", "2:13", "--max-steps-per-slice", "0",
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "faded" in printed
    result, before = _slices(out), _slices(folder / "start.nrrd")
    log = json.loads((tmp_path / "out.propagation.json").read_text())
    written = log["written_slices"]
    assert written and start not in written
    for index in range(truth.shape[0]):
        if index not in written:
            assert np.array_equal(result[index], before[index])  # the stray slice 0 too
    assert dice(result[2:14], truth[2:14]) > 0.9
    assert [s["index"] for s in log["slices"] if s["kept"]] == written
    assert {e["reason"] for e in log["ends"]} <= {"faded", "vanished", "range-end"} and log["plane"] == PLANE
    assert all(s["steps"] == [] for s in log["slices"])
    assert all(s["faded"] is (s["end"] == "faded") for s in log["slices"])  # no click: a faded start ends
    original = sitk.ReadImage(str(folder / "image.nrrd"))
    assert sitk.ReadImage(str(out)).GetDirection() == pytest.approx(original.GetDirection())


def test_propagate_with_the_simulated_annotator_uses_the_truth(files, tmp_path):
    folder, truth, start = files
    out = tmp_path / "sim.nrrd"
    code = main(["propagate", "--image", str(folder / "image.nrrd"), "--mask", str(folder / "start.nrrd"),
                 "--plane", PLANE, "--index", str(start), "--direction", "up", "--max-steps-per-slice", "2",
                 "--policy", "simulated", "--truth", str(folder / "truth.nrrd"), "--segmenter", "graphcut",
                 "--out", str(out), "--log", str(tmp_path / "sim.json")])
    assert code == 0
    log = json.loads((tmp_path / "sim.json").read_text())
    assert all(s["direction"] == "up" and s["index"] > start for s in log["slices"])
    assert log["policy"]["name"] == "simulated"
    assert all(len(s["steps"]) <= 2 for s in log["slices"])
    last = log["slices"][-1]
    assert not last["kept"] and last["end"] in ("no-target", "vanished", "shrank", "faded")


@pytest.mark.parametrize("extra, message", [
    (["--index", "1"], "empty on coronal slice 1"),
    (["--index", "7", "--range", "9:3"], "not inside"),
    (["--index", "7", "--range", "x"], "FIRST:LAST"),
    (["--index", "99"], "outside 0..14"),
    (["--index", "7", "--policy", "simulated"], "needs the reference mask"),
    (["--index", "7", "--max-steps-per-slice", "-1"], "0 or more"),
])
def test_propagate_bad_input_is_one_line_and_writes_nothing(files, tmp_path, capsys, extra, message):
    folder, _, _ = files
    out = tmp_path / "never.nii.gz"
    code = main(["propagate", "--image", str(folder / "image.nrrd"), "--mask", str(folder / "start.nrrd"),
                 "--plane", PLANE, "--out", str(out), *extra])
    error = capsys.readouterr().err
    assert code == 2 and message in error and len(error.strip().splitlines()) == 1
    assert not out.exists()


def test_propagate_never_overwrites(files, tmp_path, capsys):
    folder, _, start = files
    out = tmp_path / "out.nrrd"
    out.write_text("mine")
    arguments = ["propagate", "--image", str(folder / "image.nrrd"), "--mask", str(folder / "start.nrrd"),
                 "--plane", PLANE, "--index", str(start), "--max-steps-per-slice", "0"]
    assert main([*arguments, "--out", str(out)]) == 2 and "already exists" in capsys.readouterr().err
    assert out.read_text() == "mine"
    assert main([*arguments, "--out", str(folder / "start.nrrd"), "--overwrite"]) == 2
    assert "must not overwrite an input" in capsys.readouterr().err
    assert main([*arguments, "--out", str(tmp_path / "out.png")]) == 2
    assert "3D mask" in capsys.readouterr().err


def test_eval3d_writes_summary_cases_plot_and_skipped(files, tmp_path, capsys):
    folder, truth, _ = files
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    image = sitk.ReadImage(str(folder / "image.nrrd"))
    sitk.WriteImage(image, str(images / "blob.nrrd"))
    sitk.WriteImage(sitk.ReadImage(str(folder / "truth.nrrd")), str(masks / "blob.nii.gz"))
    sitk.WriteImage(image, str(images / "unpaired.nrrd"))
    flat = sitk.GetImageFromArray(np.arange(64, dtype=np.uint8).reshape(8, 8))
    sitk.WriteImage(flat, str(images / "flat.png"))
    sitk.WriteImage(flat, str(masks / "flat.png"))
    out = tmp_path / "results"
    code = main(["eval3d", "--images", str(images), "--masks", str(masks), "--out", str(out), "--plane", PLANE,
                 "--clicks-per-slice", "1", "--no-progress"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert tuple(summary) == SUMMARY_KEYS and summary["cases"] == 1
    assert summary["dice3d"] > 0.8 and summary["slices"] >= 5
    rows = list(csv.DictReader((out / "per_case.csv").open()))
    assert rows[0]["case"] == "blob" and int(rows[0]["truth_slices"]) == int(truth.any(axis=(1, 2)).sum())
    assert float(rows[0]["dice3d"]) == pytest.approx(summary["dice3d"], abs=1e-4)
    assert (out / "dice3d_vs_clicks.png").stat().st_size > 0
    skipped = (out / "skipped.txt").read_text()
    assert "unpaired.nrrd" in skipped and "flat.png: the image is 2D" in skipped
    assert main(["eval3d", "--images", str(images), "--masks", str(masks), "--out", str(out)]) == 2
    assert "already holds" in capsys.readouterr().err
