"""Fault injection on real processes and real files: a writer killed (SIGKILL) or interrupted
(SIGINT, Ctrl+C) at any moment leaves the earlier file whole or the new one whole, never a part
(finding 5 of issue 17: kill -9 during `continue --overwrite` left a truncated gzip that read back
as a volume with most slices zero).

The delays are spread over the measured length of the write, so the kills land before, during
and after it; which of old and new survives depends on the moment, that one of them does not."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk
from user_files import binary_mask, volume

from ibisagent import image_io

#: A mask large enough that compressing and writing it takes a good fraction of a second.
SHAPE = (120, 256, 256)

WRITER = """
import signal, sys, numpy as np
from ibisagent import image_io
signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl+C as in a terminal, also under a shell that ignores it
new = np.load(sys.argv[2])
print("writing", flush=True)
image_io.write_mask(sys.argv[1], new)
print("done", flush=True)
"""


def _masks(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(SHAPE) < 0.5  # noise: slow to compress


def _start(target, new_file) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(new_file)], stdout=subprocess.PIPE,
                             text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert child.stdout.readline().strip() == "writing"
    return child


def _read(path) -> np.ndarray:
    return sitk.GetArrayFromImage(image_io.read_image(str(path))) != 0


def _others(folder, *keep) -> list:
    """Files in ``folder`` beside ``keep`` that are not hidden temporary files."""
    return [n for n in os.listdir(folder) if n not in keep and not n.startswith(".ibisagent-tmp-")]


@pytest.fixture(scope="module")
def old_and_new(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kill")
    old, new = _masks(1), _masks(2)
    np.save(folder / "new.npy", new)
    image_io.write_mask(str(folder / "template.nii.gz"), old)
    started = time.perf_counter()
    child = _start(folder / "measure.nii.gz", folder / "new.npy")
    assert child.stdout.readline().strip() == "done" and child.wait(60) == 0
    write_s = time.perf_counter() - started
    assert write_s > 0.02, f"the write took {write_s:.3f} s; make SHAPE larger so kills can land inside it"
    return folder, old, new, write_s


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_a_writer_stopped_at_any_moment_leaves_a_whole_file(old_and_new, how):
    folder, old, new, write_s = old_and_new
    target = folder / f"result-{how.name}.nii.gz"
    seen = {"old": 0, "new": 0}
    temporaries = {n for n in os.listdir(folder) if n.startswith(".ibisagent-tmp-")}
    for delay in np.linspace(0.0, 1.3 * write_s, 12):
        with open(folder / "template.nii.gz", "rb") as source, open(target, "wb") as copy:
            copy.write(source.read())  # the earlier result, whole
        child = _start(target, folder / "new.npy")
        time.sleep(delay)
        child.send_signal(how)
        child.wait(60)
        result = _read(target)  # whole: it reads, and the integrity check passes
        if np.array_equal(result, old):
            seen["old"] += 1
        else:
            assert np.array_equal(result, new), f"a mixture after {how.name} at {delay:.3f} s"
            seen["new"] += 1
    assert seen["old"] >= 1, seen  # the early kills did land before the file was replaced
    if how == signal.SIGINT:  # Ctrl+C runs the clean-up: no temporary file is left behind
        assert {n for n in os.listdir(folder) if n.startswith(".ibisagent-tmp-")} == temporaries


CONTINUE = """
import sys
from ibisagent.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _whole_gzip_nifti(data: bytes, voxels: int) -> bool:
    """Whether ``data`` is a complete gzip stream holding a NIfTI header and ``voxels`` bytes
    (checked with the standard library, not with the code under test)."""
    try:
        return len(gzip.decompress(data)) >= 352 + voxels
    except (EOFError, OSError):
        return False


def test_kill_9_while_continue_overwrites_a_volume_leaves_the_earlier_result_whole(tmp_path):
    image = volume(tmp_path, ".nii.gz", shape=(100, 256, 256))
    mask = binary_mask(tmp_path, image, "start.nii.gz")
    voxels = 100 * 256 * 256
    out, log = tmp_path / "result.nii.gz", tmp_path / "result.steps.json"
    command = [sys.executable, "-u", "-c", CONTINUE, "continue", "--image", image, "--mask", mask, "--plane", "axial",
               "--index", "50", "--request", "Segment the ball.", "--max-steps", "1", "--out", str(out), "--overwrite"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    assert subprocess.run(command, capture_output=True, env=env, timeout=300).returncode == 0
    earlier, earlier_log = out.read_bytes(), log.read_bytes()
    assert _whole_gzip_nifti(earlier, voxels)

    def run_until_outputs() -> subprocess.Popen:
        """Start the command and return once it printed its last line before writing."""
        child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        for line in child.stdout:
            if line.startswith("Stopped:"):
                break
        return child

    child = run_until_outputs()
    started = time.perf_counter()
    child.stdout.readline()  # the line printed once the outputs are written
    write_s = time.perf_counter() - started
    child.wait(300)
    child.stdout.close()
    outcomes = set()
    for delay in np.linspace(0.0, 1.2 * write_s, 10):
        out.write_bytes(earlier)
        log.write_bytes(earlier_log)
        child = run_until_outputs()
        time.sleep(delay)
        child.kill()
        child.wait(60)
        child.stdout.close()
        data = out.read_bytes()
        assert _whole_gzip_nifti(data, voxels), f"a cut file after kill -9 at {delay:.3f} s of {write_s:.3f} s"
        outcomes.add("earlier" if data == earlier else "new")
        assert log.read_bytes() == earlier_log or log.read_text().rstrip().endswith("}")
        assert _others(tmp_path, "volume.nii.gz", "all_start.nii.gz", "start.nii.gz", "result.nii.gz",
                       "result.steps.json") == []
    assert "earlier" in outcomes
