"""The `ibisagent` command end to end on real files (MNI152 slices written to disk)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from ibisagent import image_io
from ibisagent.cli import main
from ibisagent.evaluate import SUMMARY_KEYS
from ibisagent.metrics import iou
from ibisagent.sample_data import mni152_slice, mni152_volume, rough_mask


@pytest.fixture(scope="module")
def slice_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slice")
    image, truth = mni152_slice("brain", "axial")
    sitk.WriteImage(sitk.GetImageFromArray(image), str(folder / "t1.nii.gz"))
    image_io.write_mask(str(folder / "truth.nii.gz"), truth)
    image_io.write_mask(str(folder / "start.nii.gz"), rough_mask(truth, "cut"))
    return folder


def test_continue_writes_mask_log_and_pictures(slice_files, tmp_path, capsys):
    out = tmp_path / "result.nii.gz"
    code = main([
        "continue", "--image", str(slice_files / "t1.nii.gz"), "--mask", str(slice_files / "start.nii.gz"),
        "--request", "Segment the brain.", "--out", str(out), "--max-steps", "3",
        "--truth", str(slice_files / "truth.nii.gz"), "--pictures", str(tmp_path / "pictures"),
    ])
    printed = capsys.readouterr().out
    assert code == 0
    assert "Proposals by: heuristic" in printed and "not the IBISAgent model" in printed
    mask = image_io.read_mask_2d(str(out), (233, 197))
    log = json.loads((tmp_path / "result.steps.json").read_text())
    assert log["policy"]["name"] == "heuristic" and 1 <= len(log["steps"]) <= 3
    assert log["final_mask_pixels"] == int(mask.sum())
    pictures = sorted(os.listdir(tmp_path / "pictures"))
    assert "step_00.png" in pictures and "all_steps.png" in pictures
    assert len([p for p in pictures if p.startswith("step_")]) == len(log["steps"]) + 1


def test_continue_on_a_volume_changes_only_the_chosen_slice(tmp_path):
    t1, truth, affine = mni152_volume("brain")
    image = sitk.GetImageFromArray(np.ascontiguousarray(t1.transpose(2, 1, 0)))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # RAS voxel axes written as LPS cosines
    sitk.WriteImage(image, str(tmp_path / "t1.nrrd"))
    start = np.ascontiguousarray(truth.transpose(2, 1, 0)).astype(np.uint8)
    start[60:85, 132, :] = 0  # a band missing from the coronal slice the agent will work on
    start_image = sitk.GetImageFromArray(start)
    start_image.CopyInformation(image)
    sitk.WriteImage(start_image, str(tmp_path / "start.nrrd"))
    code = main([
        "continue", "--image", str(tmp_path / "t1.nrrd"), "--mask", str(tmp_path / "start.nrrd"),
        "--request", "Segment the brain.", "--out", str(tmp_path / "out.nrrd"), "--plane", "coronal",
        "--index", "100", "--max-steps", "2",
    ])
    assert code == 0
    out = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out.nrrd"))) != 0
    changed = np.argwhere(out != start.astype(bool))
    # LPS coronal index 100 is file j = 232 - 100 (the file's j axis points anterior)
    assert len(changed) > 0 and set(changed[:, 1]) == {132}


def test_bad_input_exits_with_a_clear_message(tmp_path, capsys):
    code = main(["continue", "--image", str(tmp_path / "nope.png"), "--request", "x", "--out", str(tmp_path / "o.png")])
    assert code == 2 and "No such file" in capsys.readouterr().err
    (tmp_path / "a.png").write_bytes(b"")
    code = main(["continue", "--image", str(tmp_path / "a.png"), "--request", "x", "--out", str(tmp_path / "a.png")])
    assert code == 2 and "must not overwrite" in capsys.readouterr().err


@pytest.fixture(scope="module")
def eval_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    for sub in ("images", "masks", "initial"):
        (root / sub).mkdir()
    cases = [("brain", "axial"), ("white", "coronal"), ("grey", "sagittal")]
    for number, (tissue, plane) in enumerate(cases):
        image, truth = mni152_slice(tissue, plane)
        name = f"case{number}"
        sitk.WriteImage(sitk.GetImageFromArray(image), str(root / "images" / f"{name}.nii.gz"))
        image_io.write_mask(str(root / "masks" / f"{name}.png"), truth)
        image_io.write_mask(str(root / "initial" / f"{name}.nrrd"), rough_mask(truth, "eroded"))
    image_io.write_mask(str(root / "masks" / "orphan.png"), np.ones((4, 4), bool))
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 5), np.float32)), str(root / "images" / "flat.nii.gz"))
    image_io.write_mask(str(root / "masks" / "flat.png"), np.ones((5, 5), bool))
    image_io.write_mask(str(root / "initial" / "flat.png"), np.ones((5, 5), bool))
    return root


def test_eval_writes_summary_csv_plot_and_lists_skipped_pairs(eval_folders, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main([
        "eval", "--images", str(eval_folders / "images"), "--masks", str(eval_folders / "masks"),
        "--initial", str(eval_folders / "initial"), "--policy", "simulated", "--segmenter", "graphcut",
        "--clicks", "5", "--out", str(out), "--no-progress",
    ])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert tuple(summary) == SUMMARY_KEYS + ("start_iou", "groups") and summary["cases"] == 3
    assert 0 < summary["miou@1"] <= summary["miou@5"] <= 1
    assert 1 <= summary["noc@90"] <= 5
    rows = (out / "per_case.csv").read_text().strip().splitlines()
    assert len(rows) == 4 and rows[0].startswith("case,start_iou,iou@1")
    skipped = (out / "skipped.txt").read_text()
    assert "orphan.png" in skipped and "flat.nii.gz" in skipped and "constant" in skipped
    assert (out / "iou_vs_clicks.png").stat().st_size > 1000
    assert "skipped orphan.png" in capsys.readouterr().out


def test_eval_simulated_clicks_improve_over_the_start(eval_folders, tmp_path):
    out = tmp_path / "eval"
    main(["eval", "--images", str(eval_folders / "images"), "--masks", str(eval_folders / "masks"),
          "--initial", str(eval_folders / "initial"), "--clicks", "3", "--out", str(out), "--no-progress"])
    rows = [line.split(",") for line in (out / "per_case.csv").read_text().strip().splitlines()[1:]]
    for row in rows:
        assert float(row[3]) > float(row[1]), row  # iou@3 > start IoU


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "ibisagent.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("continue", "eval", "serve", "demo"):
        assert command in result.stdout


def test_continue_never_replaces_existing_files_without_overwrite(slice_files, tmp_path, capsys):
    out = tmp_path / "mine.nii.gz"
    out.write_bytes(b"the user's own file")
    common = ["continue", "--image", str(slice_files / "t1.nii.gz"), "--request", "Segment the brain.",
              "--max-steps", "1"]
    assert main(common + ["--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"the user's own file"
    assert main(common + ["--out", str(tmp_path / "new.nii.gz"), "--truth", str(slice_files / "truth.nii.gz"),
                          "--log", str(slice_files / "truth.nii.gz")]) == 2
    assert "must not overwrite an input" in capsys.readouterr().err
    for bad_out, message in (("o.jpg", "write the mask as one of"), ("o.txt", "write the mask as one of")):
        assert main(common + ["--out", str(tmp_path / bad_out)]) == 2
        assert message in capsys.readouterr().err and not (tmp_path / bad_out).exists()
    assert main(common + ["--out", str(out), "--overwrite"]) == 0
    assert image_io.read_mask_2d(str(out), (233, 197)).any()


def test_continue_rejects_bad_options_with_one_line(slice_files, tmp_path, capsys):
    common = ["continue", "--image", str(slice_files / "t1.nii.gz"), "--request", "x", "--out", str(tmp_path / "o.nii.gz")]
    for extra, message in ((["--window", "a,b"], "LOW,HIGH"), (["--max-steps", "0"], "at least 1"),
                           (["--policy", "simulated"], "--truth")):
        assert main(common + extra) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_continue_keeps_a_colour_png_in_colour(tmp_path, monkeypatch):
    from ibisagent import headless

    image, truth = mni152_slice("brain", "axial")
    rgb = np.zeros(image.shape + (3,), np.uint8)
    rgb[...] = (205, 160, 130)  # skin
    rgb[truth] = (110, 60, 45)  # a dark lesion
    from PIL import Image

    Image.fromarray(rgb).save(tmp_path / "lesion.png")
    image_io.write_mask(str(tmp_path / "truth.png"), truth)
    seen = {}
    original = headless.run_continue

    def spy(image_rgb, *args, **kwargs):
        seen["image"] = image_rgb.copy()
        return original(image_rgb, *args, **kwargs)

    monkeypatch.setattr(headless, "run_continue", spy)
    out = tmp_path / "lesion_mask.png"
    code = main(["continue", "--image", str(tmp_path / "lesion.png"), "--request", "Segment the lesion.",
                 "--out", str(out), "--policy", "simulated", "--truth", str(tmp_path / "truth.png"),
                 "--max-steps", "3"])
    assert code == 0
    assert np.array_equal(seen["image"], rgb)  # the colours reach the engine unchanged
    assert iou(image_io.read_mask_2d(str(out), truth.shape), truth) > 0.9


def test_eval_refuses_an_earlier_runs_folder_and_a_file(eval_folders, tmp_path, capsys):
    args = ["eval", "--images", str(eval_folders / "images"), "--masks", str(eval_folders / "masks"),
            "--clicks", "1", "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "earlier")]) == 0
    capsys.readouterr()
    assert main(args + ["--out", str(tmp_path / "earlier")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(args + ["--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(args + ["--out", str(tmp_path / "earlier"), "--overwrite"]) == 0
    assert json.loads((tmp_path / "earlier" / "summary.json").read_text())["cases"] == 3
    # a file of the user's named like an output is never replaced, --overwrite or not
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "summary.json").write_text("{}")
    for extra in ([], ["--overwrite"]):
        assert main(args + ["--out", str(tmp_path / "mine")] + extra) == 2
        assert "summary.json, which this tool did not write" in capsys.readouterr().err
    assert (tmp_path / "mine" / "summary.json").read_text() == "{}"


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_continue_refuses_an_image_with_nan(tmp_path, capsys, suffix):
    pytest.importorskip("nibabel")  # SimpleITK's NIfTI reader hides NaN; nibabel sees it
    image, _ = mni152_slice("brain", "axial")
    image[3, 4] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(image), str(tmp_path / f"nan{suffix}"))
    code = main(["continue", "--image", str(tmp_path / f"nan{suffix}"), "--request", "x",
                 "--out", str(tmp_path / "o.nii.gz")])
    assert code == 2 and "NaN" in capsys.readouterr().err and not (tmp_path / "o.nii.gz").exists()


def test_eval_reads_jpeg_photographs_and_lists_files_it_cannot_use(tmp_path):
    from PIL import Image

    image, truth = mni152_slice("brain", "axial")
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    rgb = np.zeros(image.shape + (3,), np.uint8)
    rgb[...] = (205, 160, 130)
    rgb[truth] = (110, 60, 45)
    Image.fromarray(rgb).save(tmp_path / "images" / "photo.jpg", quality=95)
    image_io.write_mask(str(tmp_path / "masks" / "photo.png"), truth)
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    assert main(["eval", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
                 "--clicks", "2", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["cases"] == 1
    assert "notes.txt: not a file type" in (tmp_path / "out" / "skipped.txt").read_text()
