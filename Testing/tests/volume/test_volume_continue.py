"""`ibisagent continue` on a whole volume (no --plane), end to end on real files: a label map with
several labels written with a permuted, flipped direction, and a real dev volume."""

import json
import os

import numpy as np
import pytest
import SimpleITK as sitk
from session3d_doubles import ellipsoid_volume

from ibisagent.cli import main
from ibisagent.metrics import dice
from ibisagent.volume_views import views_of_image

DEVSET = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "shared", "data", "devset",
                                       "3d"))
SHAPE = (24, 64, 72)
DIRECTION = (0, 0, 1, -1, 0, 0, 0, 1, 0)


def _image(array, pixel=None):
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetDirection(DIRECTION)
    image.SetSpacing((1.0, 1.0, 3.0))
    image.SetOrigin((4.0, -2.0, 7.5))
    return sitk.Cast(image, pixel) if pixel is not None else image


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The ellipsoid as label 2 of a uint16 label map with a leak on one slice; label 5 beside
    the leak and label 7 inside the target's bounding box."""
    folder = tmp_path_factory.mktemp("continue3d")
    grey, truth = ellipsoid_volume(SHAPE)
    labels = np.zeros(SHAPE, np.uint16)
    labels[truth] = 2
    labels[12, 30:40, 55:66] = 2  # the leak
    labels[12, 41:46, 55:66] = 5  # another structure right beside it
    labels[2:4, 5:9, 5:9] = 7
    reference = np.where(truth, 2, np.where(labels == 2, 0, labels)).astype(np.uint16)
    sitk.WriteImage(_image(grey), str(folder / "volume.nii.gz"))
    sitk.WriteImage(_image(labels), str(folder / "labels.nrrd"))
    sitk.WriteImage(_image(reference), str(folder / "reference.nii.gz"))
    return folder, labels, truth


def test_continue_works_the_whole_volume_and_changes_only_the_worked_label(files, tmp_path, capsys):
    folder, labels, truth = files
    out, log = tmp_path / "out.nrrd", tmp_path / "out.steps.json"
    code = main(["continue", "--image", str(folder / "volume.nii.gz"), "--mask", str(folder / "labels.nrrd"),
                 "--label", "2", "--request", "Segment the bright ball.", "--out", str(out),
                 "--truth", str(folder / "reference.nii.gz")])
    assert code == 0, capsys.readouterr().err
    written = sitk.ReadImage(str(out))
    source = sitk.ReadImage(str(folder / "labels.nrrd"))
    assert written.GetPixelID() == source.GetPixelID()
    for read in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(written, read)() == getattr(source, read)()
    result = sitk.GetArrayFromImage(written)
    others = (labels != 0) & (labels != 2)
    assert np.array_equal(result[others], labels[others])  # other labels bit-identical
    assert set(np.unique(result[labels != result])) <= {0, 2}  # only label-2 voxels change
    assert dice(result == 2, truth) > dice(labels == 2, truth)
    document = json.loads(log.read_text())
    assert document["label"] == 2 and document["steps"] and document["start_dice"] < document["steps"][-1]["dice"]
    views = views_of_image(sitk.ReadImage(str(folder / "volume.nii.gz")))
    for step in document["steps"]:
        for click in step["clicks"]:
            voxel = views.to_voxel(click["plane"], click["index"], click["x"], click["y"])
            assert voxel == (click["k"], click["j"], click["i"])
    assert "Wrote" in capsys.readouterr().out


def test_bad_whole_volume_inputs_stop_before_any_work(files, tmp_path, capsys):
    folder, labels, _ = files
    image, mask = str(folder / "volume.nii.gz"), str(folder / "labels.nrrd")
    base = ["continue", "--image", image, "--request", "x"]
    before = (folder / "labels.nrrd").read_bytes()
    shifted = _image(labels)
    shifted.SetOrigin((0.0, 0.0, 0.0))
    sitk.WriteImage(shifted, str(tmp_path / "shifted.nrrd"))
    cases = [
        (base + ["--mask", mask, "--out", str(tmp_path / "a.nrrd")], "--label N"),
        (base + ["--mask", mask, "--label", "2", "--out", mask], "must not overwrite an input"),
        (base + ["--mask", mask, "--label", "2", "--index", "3", "--out", str(tmp_path / "b.nrrd")], "--plane"),
        (base + ["--mask", mask, "--label", "2", "--out", str(tmp_path / "c.png")], "volume's mask"),
        (base + ["--mask", mask, "--label", "2", "--pictures", str(tmp_path / "p"), "--out", str(tmp_path / "d.nrrd")],
         "--pictures"),
        (base + ["--mask", str(tmp_path / "shifted.nrrd"), "--label", "2", "--out", str(tmp_path / "e.nrrd")],
         "not on the grid"),
        (base + ["--mask", mask, "--label", "70000", "--out", str(tmp_path / "f.nrrd")], "cannot be stored"),
        (base + ["--mask", mask, "--label", "2", "--looks", "0", "--out", str(tmp_path / "h.nrrd")], "--looks"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        error = capsys.readouterr().err
        assert message in error and len(error.strip().splitlines()) == 1 and "Traceback" not in error
    assert (folder / "labels.nrrd").read_bytes() == before
    assert not [p for p in os.listdir(tmp_path) if p != "shifted.nrrd"]  # nothing written, no temporary files
    (tmp_path / "g.nrrd").write_bytes(b"mine")
    assert main(base + ["--mask", mask, "--label", "2", "--out", str(tmp_path / "g.nrrd")]) == 2
    assert "already exists" in capsys.readouterr().err and (tmp_path / "g.nrrd").read_bytes() == b"mine"


@pytest.mark.skipif(not os.path.isdir(DEVSET), reason="the 3D dev volumes (../shared/data/devset/3d) are absent")
def test_continue_on_a_real_ct_volume_from_its_rough_start(tmp_path, capsys):
    name = os.path.join(DEVSET, "ct_deeplesion_000009")
    out = tmp_path / "lesion.nii.gz"
    code = main(["continue", "--image", name + "_image.nii.gz", "--mask", name + "_initial.nii.gz",
                 "--request", "Segment the lesion.", "--out", str(out), "--truth", name + "_label.nii.gz",
                 "--max-steps", "4"])
    assert code == 0, capsys.readouterr().err
    start = sitk.ReadImage(name + "_initial.nii.gz")
    written = sitk.ReadImage(str(out))
    assert written.GetSize() == start.GetSize() and written.GetDirection() == start.GetDirection()
    document = json.loads((tmp_path / "lesion.steps.json").read_text())
    assert document["stop_reason"] in ("terminated", "step-limit") and len(document["steps"]) <= 4
    before, after = sitk.GetArrayFromImage(start) != 0, sitk.GetArrayFromImage(written) != 0
    assert int(after.sum()) == document["final_voxels"]  # the log tells exactly what changed
    assert int((after & ~before).sum()) == document["voxels_added"]
    assert int((before & ~after).sum()) == document["voxels_removed"]
    assert document["volume_tool"]["name"] == "graphcut3d" and document["confirm"]
