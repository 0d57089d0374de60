"""`ibisagent.safe_io` on real files: atomic replacement, outputs compared with inputs as files
(hard and symbolic links), output sets committed together, and folders cleaned only of the
files the tool wrote (by manifest, with kinds and stamps)."""

from __future__ import annotations

import json
import os

import pytest
from read_only import read_only_folder

from ibisagent import safe_io
from ibisagent.safe_io import MANIFEST, OutputSet, OwnedFolder, UnsafeOutputError


def _no_temporaries(folder) -> bool:
    return not [n for _, _, files in os.walk(folder) for n in files if n.startswith(safe_io.TEMP_PREFIX)]


# -- atomic writes ---------------------------------------------------------------------------------
def test_atomic_path_replaces_at_once_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "result.nii.gz"
    target.write_bytes(b"old")
    with safe_io.atomic_path(target) as temporary:
        assert temporary.endswith(".nii.gz") and os.path.dirname(temporary) == str(tmp_path)
        assert target.read_bytes() == b"old"  # nothing visible until the block ends
        with open(temporary, "wb") as handle:
            handle.write(b"new")
    assert target.read_bytes() == b"new" and _no_temporaries(tmp_path)
    for failure in (RuntimeError("writer failed"), KeyboardInterrupt()):
        with pytest.raises(type(failure)):
            with safe_io.atomic_path(target) as temporary:
                with open(temporary, "wb") as handle:
                    handle.write(b"half")
                raise failure
        assert target.read_bytes() == b"new" and _no_temporaries(tmp_path)


def test_a_new_file_gets_the_ordinary_mode_and_a_replaced_one_keeps_its_own(tmp_path):
    umask = os.umask(0o022)
    try:
        safe_io.write_text(tmp_path / "new.txt", "x")
        assert os.stat(tmp_path / "new.txt").st_mode & 0o777 == 0o644
        os.chmod(tmp_path / "new.txt", 0o640)
        safe_io.write_text(tmp_path / "new.txt", "y")
        assert os.stat(tmp_path / "new.txt").st_mode & 0o777 == 0o640
    finally:
        os.umask(umask)


def test_write_json_refuses_nan_and_keeps_the_old_file(tmp_path):
    safe_io.write_json(tmp_path / "a.json", {"x": 1})
    with pytest.raises(ValueError):
        safe_io.write_json(tmp_path / "a.json", {"x": float("nan")})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1} and _no_temporaries(tmp_path)


def test_a_symbolic_link_given_as_output_is_replaced_never_written_through(tmp_path):
    (tmp_path / "theirs.txt").write_text("someone else's")
    os.symlink(tmp_path / "theirs.txt", tmp_path / "link.txt")
    safe_io.write_text(tmp_path / "link.txt", "mine")
    assert (tmp_path / "theirs.txt").read_text() == "someone else's"
    assert not os.path.islink(tmp_path / "link.txt") and (tmp_path / "link.txt").read_text() == "mine"


# -- identity --------------------------------------------------------------------------------------
def test_same_file_sees_hard_and_symbolic_links_and_paths_not_yet_made(tmp_path):
    (tmp_path / "input.nii.gz").write_bytes(b"ct")
    os.link(tmp_path / "input.nii.gz", tmp_path / "hard.nii.gz")
    os.symlink(tmp_path / "input.nii.gz", tmp_path / "soft.nii.gz")
    (tmp_path / "sub").mkdir()
    for other in ("hard.nii.gz", "soft.nii.gz", "sub/../input.nii.gz"):
        assert safe_io.same_file(tmp_path / other, tmp_path / "input.nii.gz"), other
    (tmp_path / "copy.nii.gz").write_bytes(b"ct")
    assert not safe_io.same_file(tmp_path / "copy.nii.gz", tmp_path / "input.nii.gz")
    assert safe_io.same_file(tmp_path / "new" / "a.txt", tmp_path / "sub" / ".." / "new" / "a.txt")


def test_check_outputs_refuses_inputs_repeats_existing_files_and_folders(tmp_path):
    (tmp_path / "input.nii.gz").write_bytes(b"ct")
    os.link(tmp_path / "input.nii.gz", tmp_path / "hard.nii.gz")
    (tmp_path / "old.json").write_text("{}")
    (tmp_path / "dir").mkdir()
    cases = [
        ({"--out": tmp_path / "hard.nii.gz"}, True, "must not overwrite an input"),
        ({"--out": tmp_path / "a.nii.gz", "--log": tmp_path / "a.nii.gz"}, True, "are the same file"),
        ({"--out": tmp_path / "a.nii.gz", "--log": tmp_path / "old.json"}, False, "already exists"),
        ({"--out": tmp_path / "dir"}, True, "is a folder"),
        ({"--out": tmp_path / "input.nii.gz" / "x.nii.gz"}, True, "is a file"),
    ]
    for outputs, overwrite, message in cases:
        with pytest.raises(UnsafeOutputError, match=message):
            safe_io.check_outputs(outputs, [str(tmp_path / "input.nii.gz")], overwrite)
    safe_io.check_outputs({"--out": tmp_path / "new" / "a.nii.gz", "--log": tmp_path / "old.json"},
                          [str(tmp_path / "input.nii.gz")], overwrite=True)


def test_a_read_only_folder_is_refused_before_any_work(tmp_path):
    with read_only_folder(tmp_path) as folder:
        with pytest.raises(UnsafeOutputError, match="not writable"):
            OutputSet({"--out": os.path.join(folder, "sub", "mask.nii.gz")})
        with pytest.raises(UnsafeOutputError, match="not writable"):
            OwnedFolder(os.path.join(folder, "results"))


# -- an output set --------------------------------------------------------------------------------
def test_an_output_set_commits_everything_or_nothing(tmp_path):
    (tmp_path / "mask.nii.gz").write_bytes(b"earlier mask")
    paths = {"--out": str(tmp_path / "mask.nii.gz"), "--log": str(tmp_path / "mask.steps.json")}
    with pytest.raises(ValueError):
        with OutputSet(paths, overwrite=True) as outputs:
            with outputs.stage("--out") as temporary:
                with open(temporary, "wb") as handle:
                    handle.write(b"new mask")
            outputs.write_json("--log", {"seconds": float("nan")})  # the log fails: no half set
    assert (tmp_path / "mask.nii.gz").read_bytes() == b"earlier mask"
    assert not (tmp_path / "mask.steps.json").exists() and _no_temporaries(tmp_path)
    outputs = OutputSet(paths, overwrite=True)
    with outputs.stage("--out") as temporary:
        with open(temporary, "wb") as handle:
            handle.write(b"new mask")
    with pytest.raises(RuntimeError, match="never written"):
        outputs.commit()  # the log was never staged
    assert (tmp_path / "mask.nii.gz").read_bytes() == b"earlier mask" and _no_temporaries(tmp_path)
    with OutputSet(paths, overwrite=True) as outputs:
        with outputs.stage("--out") as temporary:
            with open(temporary, "wb") as handle:
                handle.write(b"new mask")
        outputs.write_json("--log", {"steps": 2})
        assert sorted(outputs.commit()) == sorted(paths.values())
    assert (tmp_path / "mask.nii.gz").read_bytes() == b"new mask"
    assert json.loads((tmp_path / "mask.steps.json").read_text()) == {"steps": 2}


def test_an_output_set_commits_its_folders_with_it(tmp_path):
    pictures = OwnedFolder(tmp_path / "pictures", names=["step_00.png"], kind="pictures")
    with OutputSet({"--out": str(tmp_path / "a.txt")}, folders=[pictures]) as outputs:
        outputs.write_text("--out", "a")
        pictures.add_text("step_00.png", "picture")
        assert not (tmp_path / "pictures" / "step_00.png").exists()  # nothing visible before the commit
        outputs.commit()
    assert (tmp_path / "pictures" / "step_00.png").read_text() == "picture"
    pictures = OwnedFolder(tmp_path / "other", names=["step_00.png"], kind="pictures")
    with pytest.raises(KeyboardInterrupt):
        with OutputSet({"--out": str(tmp_path / "b.txt")}, folders=[pictures]) as outputs:
            pictures.add_text("step_00.png", "picture")
            raise KeyboardInterrupt
    assert not (tmp_path / "other").exists() and _no_temporaries(tmp_path)  # not even the folder it made


# -- owned folders -----------------------------------------------------------------------------------
def _run(folder, names, text="v1", **options):
    owned = OwnedFolder(folder, names=names, **options)
    for name in names:
        owned.add_text(name, text)
    owned.commit()
    return owned


def test_an_owned_folder_replaces_and_removes_only_its_own_files(tmp_path):
    folder = tmp_path / "results"
    _run(folder, ["summary.json", "images/a/step_01.png", "images/b/step_01.png"], kind="export")
    (folder / "images" / "mine.png").write_text("the user's")
    (folder / "notes.txt").write_text("the user's")
    with pytest.raises(UnsafeOutputError, match="--overwrite"):
        OwnedFolder(folder, kind="export")
    owned = _run(folder, ["summary.json", "images/a/step_01.png"], "v2", kind="export", overwrite=True)
    assert (folder / "summary.json").read_text() == "v2"
    assert not (folder / "images" / "b").exists()  # stale, ours: removed with the folder we made
    assert (folder / "images" / "mine.png").read_text() == "the user's" and (folder / "notes.txt").exists()
    manifest = json.loads((folder / MANIFEST).read_text())
    assert sorted(manifest["files"]) == ["images/a/step_01.png", "summary.json"] and owned.written
    with pytest.raises(UnsafeOutputError, match="notes.txt, which this tool did not write"):
        OwnedFolder(folder, kind="export", overwrite=True, names=["notes.txt"])


def test_a_file_changed_since_it_was_written_is_the_users(tmp_path):
    folder = tmp_path / "results"
    _run(folder, ["a.txt", "b.txt"], kind="eval")
    with open(folder / "a.txt", "a") as handle:
        handle.write(" edited by hand")
    with pytest.raises(UnsafeOutputError, match="a.txt, which this tool did not write"):
        OwnedFolder(folder, kind="eval", overwrite=True, names=["a.txt"])
    _run(folder, ["c.txt"], kind="eval", overwrite=True)  # b.txt is stale and ours, a.txt is the user's now
    assert (folder / "a.txt").read_text() == "v1 edited by hand" and not (folder / "b.txt").exists()


def test_runs_of_other_kinds_share_a_folder_without_touching_each_other(tmp_path):
    folder = tmp_path / "data"
    _run(folder, ["train.parquet", "files/r1/image.png"], kind="export verl")
    _run(folder, ["ibisagent_sft.json", "images/r1/step_01.png"], kind="export llamafactory")
    _run(folder, ["ibisagent_sft.json"], "v2", kind="export llamafactory", overwrite=True)
    assert (folder / "train.parquet").exists() and (folder / "files" / "r1" / "image.png").exists()
    assert not (folder / "images").exists()
    with pytest.raises(UnsafeOutputError, match="another ibisagent run"):
        OwnedFolder(folder, kind="export llamafactory", overwrite=True, names=["train.parquet"])


def test_an_owned_folder_never_writes_an_input_nor_is_one(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "step_00.png").write_text("an input image")
    with pytest.raises(UnsafeOutputError, match="input folder"):
        OwnedFolder(tmp_path / "images", inputs=[str(tmp_path / "images")])
    with pytest.raises(UnsafeOutputError, match="would replace the input"):
        OwnedFolder(tmp_path / "images", names=["step_00.png"], inputs=[str(tmp_path / "images" / "step_00.png")])
    with pytest.raises(ValueError, match="Not an output name"):
        OwnedFolder(tmp_path / "out", names=["../escape.txt"])


def test_keeping_stale_files_lists_them_as_ours_still(tmp_path):
    folder = tmp_path / "batch"
    _run(folder, ["case1.nii.gz"], kind="batch")
    owned = OwnedFolder(folder, kind="batch", overwrite=True, names=["case2.nii.gz"])
    owned.write_text("case2.nii.gz", "2")
    owned.finish(remove_stale=False)
    assert (folder / "case1.nii.gz").exists()
    assert sorted(json.loads((folder / MANIFEST).read_text())["files"]) == ["case1.nii.gz", "case2.nii.gz"]
    assert OwnedFolder(folder, kind="batch", overwrite=True).earlier.keys() == {"case1.nii.gz", "case2.nii.gz"}
