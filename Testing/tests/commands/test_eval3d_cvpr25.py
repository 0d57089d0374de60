"""`ibisagent eval3d --protocol cvpr25` end to end on small real files: the two DeepLesion CT
volumes of the dev set, cropped around their lesions (all 13 slices, 5 mm apart), written with
their own geometry; a 2D image and a volume of another size go to skipped.txt."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ibisagent.cli import main
from ibisagent.evaluate_cvpr25 import SUMMARY_KEYS

DEVSET_3D = Path(os.environ.get("IBISAGENT_DEVSET") or Path(__file__).resolve().parents[3].parent / "shared" / "data" / "devset") / "3d"
CASES = ("ct_deeplesion_000009", "ct_deeplesion_000010")

pytestmark = [
    pytest.mark.skipif(not (DEVSET_3D / f"{CASES[0]}_image.nii.gz").is_file(), reason=f"the dev set is not at {DEVSET_3D}"),
]
pytest.importorskip("cc3d", reason="the cvpr25 protocol needs the 'eval3d' extra")


def _crop(image, box):
    return sitk.RegionOfInterest(image, [b.stop - b.start for b in box[::-1]], [b.start for b in box[::-1]])


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cvpr25")
    for kind in ("images", "masks", "initial"):
        (root / kind).mkdir()
    for name in CASES:
        image = sitk.ReadImage(str(DEVSET_3D / f"{name}_image.nii.gz"))
        label = sitk.ReadImage(str(DEVSET_3D / f"{name}_label.nii.gz"))
        initial = sitk.ReadImage(str(DEVSET_3D / f"{name}_initial.nii.gz"))
        where = np.argwhere(sitk.GetArrayFromImage(label) > 0)
        low, high = where.min(axis=0), where.max(axis=0)
        box = (slice(0, image.GetSize()[2]),) + tuple(
            slice(max(0, int(a) - 24), min(n, int(b) + 25)) for a, b, n in zip(low[1:], high[1:], image.GetSize()[1::-1]))
        for kind, volume in (("images", image), ("masks", label), ("initial", initial)):
            sitk.WriteImage(_crop(volume, box), str(root / kind / f"{name}.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((32, 32), np.uint8)), str(root / "images" / "flat.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((32, 32), np.uint8)), str(root / "masks" / "flat.nii.gz"))
    return root


def _run(folders, out, *extra):
    return main(["eval3d", "--protocol", "cvpr25", "--images", str(folders / "images"), "--masks",
                 str(folders / "masks"), "--out", str(out), "--no-progress", *extra])


@pytest.mark.parametrize("start", ["box", "mask"])
def test_the_protocol_writes_summary_cases_plot_and_masks(folders, tmp_path, capsys, start):
    out, saved = tmp_path / "out", tmp_path / "masks"
    extra = ["--start", start, "--clicks", "5", "--save-masks", str(saved)]
    if start == "mask":
        extra += ["--initial", str(folders / "initial")]
    assert _run(folders, out, *extra) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert tuple(summary) == SUMMARY_KEYS and summary["cases"] == 2
    assert 0.6 < summary["dsc_final"] <= 1.0 and 0.0 < summary["dsc_auc"] <= 4.0 and summary["seconds_per_click"] > 0
    assert "dsc_final" in printed
    rows = list(csv.DictReader((out / "per_case.csv").open()))
    assert [r["case"] for r in rows] == list(CASES)
    for row in rows:
        dscs = [float(row[f"dsc_{n}"]) for n in range(6)]
        assert float(row["dsc_final"]) == dscs[-1] and all(f"nsd_{n}" in row for n in range(6))
    assert (out / "dsc_vs_clicks.png").read_bytes()[:4] == b"\x89PNG"
    assert ("flat.nii.gz: the image is 2D" if start == "box" else "flat.nii.gz: no starting mask") in (out / "skipped.txt").read_text()
    for name in CASES:
        written = sitk.ReadImage(str(saved / f"{name}.nii.gz"))
        image = sitk.ReadImage(str(folders / "images" / f"{name}.nii.gz"))
        assert written.GetSize() == image.GetSize() and written.GetSpacing() == pytest.approx(image.GetSpacing())
        assert written.GetOrigin() == pytest.approx(image.GetOrigin())
        assert written.GetDirection() == pytest.approx(image.GetDirection())
        assert set(np.unique(sitk.GetArrayFromImage(written))) <= {0, 1}
    # A second run into the same folders is refused without --overwrite, saying what is there, then
    # replaces only its own files.
    assert _run(folders, out, *extra) == 2
    error = capsys.readouterr().err
    assert "already holds the results of an evaluation" in error and "--overwrite" in error
    assert _run(folders, tmp_path / "again", *extra) == 2
    assert "already holds the final masks of an evaluation" in capsys.readouterr().err
    (out / "notes.txt").write_text("mine")
    assert _run(folders, out, *extra, "--overwrite") == 0
    assert (out / "notes.txt").read_text() == "mine"


def test_bad_requests_are_one_line(folders, tmp_path, capsys):
    assert _run(folders, tmp_path / "a", "--start", "mask") == 2
    assert "--initial" in capsys.readouterr().err
    assert _run(folders, tmp_path / "b", "--save-masks", str(folders / "masks")) == 2  # never over the inputs
    error = capsys.readouterr().err
    assert "input" in error and len(error.strip().splitlines()) == 1
    for out in (folders / "images", folders / "initial"):  # never into an input folder
        assert _run(folders, out, "--start", "mask", "--initial", str(folders / "initial")) == 2
        error = capsys.readouterr().err
        assert "is an input folder" in error and len(error.strip().splitlines()) == 1
    (tmp_path / "link").symlink_to(tmp_path / "d", target_is_directory=True)
    assert _run(folders, tmp_path / "d", "--save-masks", str(tmp_path / "link")) == 2
    assert "different folders" in capsys.readouterr().err
    assert _run(folders, tmp_path / "c", "--segmenter3d", "graphcut3d", "--tool-option", "smoothness=-1") == 2
    assert "must not be negative" in capsys.readouterr().err
    assert sorted(os.listdir(folders / "masks")) == ["ct_deeplesion_000009.nii.gz", "ct_deeplesion_000010.nii.gz",
                                                     "flat.nii.gz"]
    assert sorted(os.listdir(folders / "initial")) == ["ct_deeplesion_000009.nii.gz", "ct_deeplesion_000010.nii.gz"]
    assert not (tmp_path / "d").exists()


def test_a_case_whose_mask_is_on_another_grid_is_skipped_with_its_reason(folders, tmp_path, capsys):
    other = tmp_path / "other"
    (other / "images").mkdir(parents=True)
    (other / "masks").mkdir()
    for kind in ("images", "masks"):
        source = folders / kind / f"{CASES[0]}.nii.gz"
        (other / kind / source.name).write_bytes(source.read_bytes())
    small = sitk.GetImageFromArray(np.ones((13, 10, 10), np.uint8))
    second = sitk.ReadImage(str(folders / "images" / f"{CASES[1]}.nii.gz"))
    moved = sitk.ReadImage(str(folders / "masks" / f"{CASES[1]}.nii.gz"))
    moved.SetOrigin(tuple(v + 500.0 for v in moved.GetOrigin()))  # the same size, 500 mm away
    for name, mask in (("b", small), ("c", moved)):
        sitk.WriteImage(second, str(other / "images" / f"{name}.nii.gz"))
        sitk.WriteImage(mask, str(other / "masks" / f"{name}.nii.gz"))
    assert _run(other, tmp_path / "out", "--clicks", "1") == 0
    skipped = (tmp_path / "out" / "skipped.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in skipped] == ["b.nii.gz", "c.nii.gz"]
    assert all("is not on the grid of the image" in line for line in skipped)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["cases"] == 1
