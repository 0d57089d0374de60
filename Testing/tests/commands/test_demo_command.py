"""`ibisagent demo` itself, end to end on the bundled MNI152 data: it writes every file the README
lists, its step log agrees with the mask it wrote, and it really improves the rough start."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("nilearn", reason="the demo's MNI152 data ship inside nilearn (the 'demo' extra)")

from ibisagent import image_io  # noqa: E402
from ibisagent.cli import main  # noqa: E402
from ibisagent.metrics import iou  # noqa: E402


def test_demo_writes_its_files_and_improves_the_rough_mask(tmp_path, capsys):
    out = tmp_path / "demo-output"
    assert main(["demo", "--out", str(out), "--max-steps", "4"]) == 0
    printed = capsys.readouterr().out
    assert "weight-free heuristic policy, not from the IBISAgent model" in printed  # said up front
    for name in ("final_mask.nii.gz", "final_mask.png", "steps.json", "steps/step_00.png", "steps/all_steps.png",
                 "inputs/t1_slice.nii.gz", "inputs/t1_slice.png", "inputs/starting_mask.nii.gz",
                 "inputs/reference_mask.nii.gz"):
        assert (out / name).is_file(), name
    log = json.loads((out / "steps.json").read_text())
    assert 1 <= len(log["steps"]) <= 4 and log["policy"]["name"] == "heuristic"
    assert sorted(p.name for p in (out / "steps").glob("step_*.png")) == [
        f"step_{i:02d}.png" for i in range(len(log["steps"]) + 1)]
    final = image_io.read_mask_2d(str(out / "final_mask.nii.gz"), _shape(out))
    truth = image_io.read_mask_2d(str(out / "inputs" / "reference_mask.nii.gz"), _shape(out))
    start = image_io.read_mask_2d(str(out / "inputs" / "starting_mask.nii.gz"), _shape(out))
    assert log["final_mask_pixels"] == int(final.sum())
    assert np.isclose(log["start_iou"], iou(start, truth)) and np.isclose(log["steps"][-1]["iou"], iou(final, truth))
    assert iou(final, truth) > iou(start, truth)
    assert f"final {iou(final, truth):.3f}" in printed


def _shape(out):
    pixels, _image = image_io.read_2d(str(out / "inputs" / "t1_slice.nii.gz"))
    return pixels.shape[:2]
