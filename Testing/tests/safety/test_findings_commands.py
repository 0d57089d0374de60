"""The findings of issue 17 on the `ibisagent` commands, each as the careful but hostile user met
it, on real files: nothing the user made is lost or silently changed. (Finding 1, the Slicer
batch, is in tests/slicer/test_slicer_user_files.py; the server's part of 11 and 13 in
tests/server/test_session_memory_and_token.py; finding 5, kill -9, in test_fault_injection.py.)"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from read_only import full_folder, read_only_folder
from user_files import ball_volume, binary_mask, digest, digests, label_mask, picture, volume

from ibisagent.cli import main

CONTINUE = ["continue", "--request", "Segment the disk.", "--max-steps", "2"]


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1, captured.err
    return captured.err


# -- 2: two outputs, one file -----------------------------------------------------------------------
def test_finding_02_out_and_log_the_same_file_is_refused(tmp_path, capsys):
    image, rough, _ = picture(tmp_path)
    out = str(tmp_path / "result.png")
    code = main(CONTINUE + ["--image", image, "--mask", rough, "--out", out, "--log", out])
    assert code == 2 and "same file" in _one_line_error(capsys)
    assert not os.path.exists(out)


# -- 3: a pictures folder holding the user's files ----------------------------------------------------
def test_finding_03_pictures_never_replace_or_delete_the_users_files(tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    image, rough, _ = picture(inputs, "step_00.png")  # the user's own images happen to be named like this
    (inputs / "step_07.png").write_bytes(b"an unrelated picture of the user's")
    before = digests(inputs)
    code = main(CONTINUE + ["--image", image, "--mask", rough, "--out", str(tmp_path / "o.png"),
                            "--pictures", str(inputs), "--overwrite"])
    assert code == 2 and "step_00.png" in _one_line_error(capsys)
    assert digests(inputs) == before and not (tmp_path / "o.png").exists()
    # pictures in a folder of the user's that only add new names are fine, and the user's files stay
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "notes.txt").write_text("mine")
    assert main(CONTINUE + ["--image", image, "--mask", rough, "--out", str(tmp_path / "o.png"),
                            "--pictures", str(tmp_path / "mixed")]) == 0
    assert (tmp_path / "mixed" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "mixed" / "step_00.png").exists() and (tmp_path / "mixed" / "all_steps.png").exists()


# -- 4: an export folder holding the user's files ------------------------------------------------------
def test_finding_04_export_overwrite_keeps_the_users_files(tmp_path, capsys):
    pytest.importorskip("pyarrow", reason="the training exports (the 'train' extra)")
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    for number in range(2):
        image, _, truth = picture(tmp_path / "images", f"case{number}.png", seed=number)
        shutil.move(truth, tmp_path / "masks" / f"case{number}.png")
        os.remove(image.replace(".png", "_rough.png"))
    assert main(["trajectories", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
                 "--out", str(tmp_path / "records"), "--max-steps", "3"]) == 0
    data = tmp_path / "data"
    (data / "images" / "mine").mkdir(parents=True)
    (data / "images" / "my_figure.png").write_bytes(b"the user's figure")
    (data / "images" / "mine" / "notes.txt").write_text("the user's notes")
    users = digests(data)
    export = ["export-training", "--records", str(tmp_path / "records"), "--out", str(data),
              "--format", "llamafactory"]
    for _ in range(2):  # into the user's folder, then over its own earlier export
        assert main(export + ["--overwrite"]) == 0, capsys.readouterr().err
        now = digests(data)
        assert {name: now.get(name) for name in users} == users
    rows = json.loads((data / "ibisagent_sft.json").read_text())
    assert rows and all((data / row["images"][0]).is_file() for row in rows)
    assert main(export) == 2 and "--overwrite" in capsys.readouterr().err  # an earlier export is never replaced unasked


# -- 6: a damaged input ------------------------------------------------------------------------------
def test_finding_06_a_truncated_volume_is_refused_by_continue_propagate_and_eval3d(tmp_path, capsys):
    image = volume(tmp_path, ".nii.gz")
    mask = binary_mask(tmp_path, image, "mask.nii.gz")
    shutil.copy(image, tmp_path / "whole.nii.gz")
    data = open(image, "rb").read()
    with open(image, "wb") as handle:
        handle.write(data[: len(data) // 2])
    # slice 3 lies in the half that is still there, so only the damage can stop the work
    code = main(CONTINUE + ["--image", image, "--mask", mask, "--plane", "axial", "--index", "3",
                            "--out", str(tmp_path / "c.nii.gz")])
    assert code == 2 and "damaged" in _one_line_error(capsys)
    code = main(["propagate", "--image", image, "--mask", mask, "--index", "3",
                 "--out", str(tmp_path / "p.nii.gz")])
    assert code == 2 and "damaged" in _one_line_error(capsys)
    assert not (tmp_path / "c.nii.gz").exists() and not (tmp_path / "p.nii.gz").exists()
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    shutil.move(image, tmp_path / "images" / "cut.nii.gz")
    shutil.copy(tmp_path / "whole.nii.gz", tmp_path / "images" / "whole.nii.gz")
    for name in ("cut", "whole"):
        shutil.copy(mask, tmp_path / "masks" / f"{name}.nii.gz")
    assert main(["eval3d", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
                 "--out", str(tmp_path / "results"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "results" / "summary.json").read_text())["cases"] == 1
    skipped = (tmp_path / "results" / "skipped.txt").read_text()
    assert "cut.nii.gz" in skipped and "damaged" in skipped


# -- 7: outputs that are links to inputs -----------------------------------------------------------------
@pytest.mark.parametrize("link", [os.link, os.symlink])
@pytest.mark.parametrize("option", ["--out", "--log"])
def test_finding_07_a_link_to_an_input_is_never_written(tmp_path, capsys, link, option):
    image, rough, _ = picture(tmp_path)
    kept = digest(image), digest(rough)
    link(rough, tmp_path / "alias.png")
    outputs = {"--out": str(tmp_path / "o.png"), "--log": str(tmp_path / "o.json")}
    outputs[option] = str(tmp_path / "alias.png")
    code = main(CONTINUE + ["--image", image, "--mask", rough, "--out", outputs["--out"], "--log", outputs["--log"],
                            "--overwrite"])
    assert code == 2 and "must not overwrite an input" in _one_line_error(capsys)
    assert (digest(image), digest(rough)) == kept


# -- 8: a mask with several labels -------------------------------------------------------------------
def test_finding_08_continue_changes_only_its_label_on_the_worked_slice(tmp_path, capsys):
    image = volume(tmp_path)
    mask = label_mask(tmp_path, image, dtype=np.int16)
    before = sitk.GetArrayFromImage(sitk.ReadImage(mask))
    out = str(tmp_path / "out.nrrd")
    common = CONTINUE + ["--image", image, "--mask", mask, "--plane", "axial", "--index", "8", "--out", out]
    assert main(common) == 2 and "several labels (1, 2, 3, 4)" in _one_line_error(capsys)
    truth = sitk.GetImageFromArray(ball_volume().astype(np.uint8))
    truth.CopyInformation(sitk.ReadImage(image))
    sitk.WriteImage(truth, str(tmp_path / "ball.nrrd"))
    assert main(common + ["--label", "1", "--max-steps", "3", "--policy", "simulated",
                          "--truth", str(tmp_path / "ball.nrrd")]) == 0
    written = sitk.ReadImage(out)
    after = sitk.GetArrayFromImage(written)
    assert written.GetPixelID() == sitk.sitkInt16
    changed = np.argwhere(after != before)
    assert len(changed) > 0 and set(changed[:, 0]) == {8}  # axial slice 8 is k = 8 here (k grows superior)
    assert set(np.unique(before[after != before])) <= {0, 1} and set(np.unique(after[after != before])) <= {0, 1}
    for label in (2, 3, 4):
        assert np.array_equal(after == label, before == label)  # other labels, on slice 8 too


def test_finding_08_propagate_changes_only_its_label(tmp_path, capsys):
    image = volume(tmp_path)
    mask = label_mask(tmp_path, image, dtype=np.uint16)
    before = sitk.GetArrayFromImage(sitk.ReadImage(mask))
    out = str(tmp_path / "out.nii.gz")
    command = ["propagate", "--image", image, "--mask", mask, "--index", "8", "--max-steps-per-slice", "0",
               "--out", out]
    assert main(command) == 2 and "several labels (1, 2, 3, 4)" in capsys.readouterr().err
    assert main(command + ["--label", "1"]) == 0
    after = sitk.GetArrayFromImage(sitk.ReadImage(out))
    assert after.dtype == np.uint16
    for label in (2, 3, 4):
        assert np.array_equal(after == label, before == label)
    assert (after == 1).sum() != (before == 1).sum()  # the label itself was propagated
    log = json.loads((tmp_path / "out.propagation.json").read_text())
    assert log["label"] == 1


# -- 9: NaN in masks of every format -----------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_finding_09_nan_in_a_mask_is_refused(tmp_path, capsys, suffix):
    image = volume(tmp_path)
    values = sitk.GetArrayFromImage(sitk.ReadImage(label_mask(tmp_path, image))).astype(np.float32)
    values[values > 1] = 0
    values[8, 0, 0] = np.nan
    mask = sitk.GetImageFromArray(values)
    mask.CopyInformation(sitk.ReadImage(image))
    sitk.WriteImage(mask, str(tmp_path / f"nan{suffix}"))
    code = main(CONTINUE + ["--image", image, "--mask", str(tmp_path / f"nan{suffix}"), "--plane", "axial",
                            "--index", "8", "--out", str(tmp_path / "o.nrrd")])
    assert code == 2 and "NaN" in _one_line_error(capsys) and not (tmp_path / "o.nrrd").exists()


# -- 10: a mask on another grid -------------------------------------------------------------------------
def test_finding_10_a_mask_on_another_grid_is_refused_with_both_geometries(tmp_path, capsys):
    image = volume(tmp_path)
    mask = sitk.ReadImage(binary_mask(tmp_path, image))
    mask.SetOrigin((480.0, 15.0, 40.0))  # 500 mm away
    mask.SetSpacing((1.0, 1.0, 1.0))
    mask.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
    sitk.WriteImage(mask, str(tmp_path / "elsewhere.nrrd"))
    for command in (CONTINUE + ["--plane", "axial", "--index", "8"], ["propagate", "--index", "8"]):
        code = main(command + ["--image", image, "--mask", str(tmp_path / "elsewhere.nrrd"),
                               "--out", str(tmp_path / "o.nrrd")])
        error = _one_line_error(capsys)
        assert code == 2 and "not on the grid" in error
        assert "origin (-20, 15, 40)" in error and "origin (480, 15, 40)" in error
    assert not (tmp_path / "o.nrrd").exists()


# -- 11: memory, in the command ------------------------------------------------------------------------
def _continue_in_a_small_address_space(tmp_path, image: str, budget_mb: str):
    """`ibisagent continue` in a child process whose address space is capped at what a small run
    takes plus 700 MB (so a 6000 x 6000 image cannot fit), with the memory budget ``budget_mb``."""
    import subprocess
    import sys

    from PIL import Image

    Image.fromarray((np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)).save(tmp_path / "small.png")
    script = ("import resource, sys\n"
              "limit = int(sys.argv[1]) * 2**20\n"
              "if limit: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
              "from ibisagent.cli import main\n"
              "code = main(sys.argv[2:])\n"
              "print('VmPeak', [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmPeak')][0])\n"
              "sys.exit(code)\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", IBISAGENT_MEMORY_MB=budget_mb)
    arguments = CONTINUE + ["--out", str(tmp_path / "o.png"), "--overwrite", "--image"]
    small = subprocess.run([sys.executable, "-c", script, "0", *arguments, str(tmp_path / "small.png")],
                           capture_output=True, text=True, env=env, timeout=300)
    assert small.returncode == 0, small.stderr
    limit = int(small.stdout.split("VmPeak")[-1].split()[0]) // 1024 + 700
    return subprocess.run([sys.executable, "-c", script, str(limit), *arguments, image], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def large_picture(tmp_path_factory) -> str:
    from PIL import Image

    path = tmp_path_factory.mktemp("large") / "large.png"
    rows, cols = np.mgrid[:6000, :6000]
    Image.fromarray(((rows // 7 + cols // 5) % 200 + 30).astype(np.uint8)).save(path)
    return str(path)


def test_finding_11_an_image_above_the_memory_budget_is_refused_with_its_size(tmp_path, large_picture):
    done = _continue_in_a_small_address_space(tmp_path, large_picture, "1000")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "6000 x 6000 pixels" in done.stderr and "Crop" in done.stderr and "downsample" in done.stderr
    assert "Proposals by" not in done.stdout  # refused before anything was allocated for it


def test_finding_11_running_out_of_memory_anyway_is_one_line(tmp_path, large_picture):
    done = _continue_in_a_small_address_space(tmp_path, large_picture, "1000000")  # the budget lets it through
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "ran out of memory" in done.stderr and len(done.stderr.strip().splitlines()) == 1


# -- 12: a long run goes on --------------------------------------------------------------------------------
def test_finding_12_trajectories_list_a_bad_image_and_go_on(tmp_path, capsys):
    from PIL import Image

    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    for number in range(2):
        image, rough, truth = picture(tmp_path / "images", f"case{number}.png", seed=number)
        os.remove(rough)
        shutil.move(truth, tmp_path / "masks" / f"case{number}.png")
    Image.fromarray(np.arange(9, dtype=np.uint8).reshape(3, 3) * 20).save(tmp_path / "images" / "tiny.png")
    Image.fromarray(np.eye(3, dtype=np.uint8) * 255).save(tmp_path / "masks" / "tiny.png")
    command = ["trajectories", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
               "--out", str(tmp_path / "records"), "--max-steps", "3"]
    assert main(command) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.index("{\n"):])
    assert summary["records"] == 2 and summary["skipped"] == 1
    skipped = (tmp_path / "records" / "skipped.txt").read_text()
    assert "tiny.png" in skipped and "too small" in skipped
    assert not (tmp_path / "records" / "tiny").exists()  # nothing half-made is left
    assert main(command) == 0  # a rerun goes past it again, and leaves the records as they were
    assert "tiny.png" in (tmp_path / "records" / "skipped.txt").read_text()


# -- 13: the smaller ones ---------------------------------------------------------------------------------
def test_finding_13_eval_refuses_the_image_folder_as_its_output(tmp_path, capsys):
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    image, rough, truth = picture(tmp_path / "images", "case.png")
    os.remove(rough)
    shutil.move(truth, tmp_path / "masks" / "case.png")
    before = digests(tmp_path / "images")
    code = main(["eval", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
                 "--out", str(tmp_path / "images"), "--clicks", "1", "--no-progress", "--workers", "1"])
    assert code == 2 and "input folder" in _one_line_error(capsys)
    assert digests(tmp_path / "images") == before


def test_finding_13_demo_keeps_an_existing_folders_files(tmp_path, capsys):
    pytest.importorskip("nilearn", reason="the demo's MNI152 data ship inside nilearn (the 'demo' extra)")
    out = tmp_path / "demo-output"
    (out / "steps").mkdir(parents=True)
    (out / "final_mask.png").write_bytes(b"the user's mask")
    (out / "steps" / "step_03.png").write_bytes(b"the user's picture")
    before = digests(out)
    for extra in ([], ["--overwrite"]):
        assert main(["demo", "--out", str(out), "--max-steps", "2"] + extra) == 2
        assert "which this tool did not write" in _one_line_error(capsys)
        assert digests(out) == before
    assert main(["demo", "--out", str(tmp_path / "fresh"), "--max-steps", "2"]) == 0
    assert main(["demo", "--out", str(tmp_path / "fresh"), "--max-steps", "2"]) == 2  # an earlier demo
    assert "--overwrite" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "fresh"), "--max-steps", "2", "--overwrite"]) == 0


def test_finding_13_an_unwritable_output_folder_is_found_before_the_work(tmp_path, capsys):
    image, rough, _ = picture(tmp_path)
    with read_only_folder(tmp_path) as folder:
        code = main(CONTINUE + ["--image", image, "--mask", rough, "--out", os.path.join(folder, "o.png")])
        captured = capsys.readouterr()
        assert code == 2 and "not writable" in captured.err
        assert "Proposals by" not in captured.out  # refused before the work, not after it


def test_finding_13_a_failing_log_leaves_no_mask(tmp_path, capsys):
    image, rough, _ = picture(tmp_path)
    with full_folder(tmp_path) as folder:
        code = main(CONTINUE + ["--image", image, "--mask", rough, "--out", str(tmp_path / "o.png"),
                                "--log", os.path.join(folder, "o.steps.json")])
        assert code == 2 and "No space" in capsys.readouterr().err
        assert not (tmp_path / "o.png").exists()  # no half set of outputs
        assert sorted(os.listdir(folder)) == ["filler"]
