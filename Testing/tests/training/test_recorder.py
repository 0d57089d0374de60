"""The training recorder: off unless asked, only applied steps, undo removes, finish measures every
step against the mask kept, and it imports with numpy alone (Slicer's Python)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from training_data import two_blobs

from ibisagent.actions import Action, format_response
from ibisagent.clicks import USER, USER_MOVED, Click
from ibisagent.episode import Episode
from ibisagent.imaging import to_rgb
from ibisagent.metrics import iou
from ibisagent.policies.base import Policy
from ibisagent.segmenters import build_segmenter
from ibisagent.training import records
from ibisagent.errors import RecordWriteError
from ibisagent.training.recorder import TrainingRecorder

SOURCE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "IBISAgentSlicer")


class FixedClicks(Policy):
    """Proposes the given normalised points in turn, then Terminate."""

    name = "fixed"

    def __init__(self, points):
        self.points = list(points)

    def respond(self, observation):
        if observation.step < len(self.points):
            x, y, positive = self.points[observation.step]
            return format_response("scripted", Action("positive" if positive else "negative", x, y))
        return format_response("all done", Action("terminate"), "done")


def episode(points):
    grey, target = two_blobs()
    return Episode(to_rgb(grey), build_segmenter("graphcut"), FixedClicks(points), request="Segment both discs."), target


def test_applied_steps_are_recorded_with_their_edits_and_undo_removes_them(tmp_path):
    recorder = TrainingRecorder(str(tmp_path / "rec"))
    inner, _ = episode([(30.5 / 112, 30.5 / 80, True), (0.9, 0.9, True), (80.5 / 112, 50.5 / 80, True)])
    recording = recorder.record(inner, source="panel")
    first = inner.propose()
    inner.apply([first.click])                                   # accepted as proposed
    second = inner.propose()                                     # a click in the background...
    inner.skip()                                                 # ...skipped: no trace
    assert len(recording.recording.steps) == 1
    inner.apply([Click(80, 50, True, USER)])                     # the person's own click
    assert recorder.recorded_steps == 2
    inner.undo()                                                 # undone: removed with its file
    assert recorder.recorded_steps == 1
    assert not os.path.exists(os.path.join(recording.recording.folder, records.step_file(2)))
    third = inner.propose()
    moved = Click(third.click.x - 1, third.click.y, False, USER_MOVED)   # moved and flipped...
    inner.apply([moved, Click(82, 52, True, USER)])                    # ...plus one more click
    folder = recording.finish()
    assert second.click is not None

    record = records.read_record(folder)
    meta = record.meta
    assert meta["finished"] and meta["source"] == "panel" and meta["truth"] == "final"
    steps = record.steps
    assert [s["decision"] for s in steps] == ["accepted", "edited"]
    assert [c["edit"] for c in steps[0]["clicks"]] == ["accepted"]
    assert [c["edit"] for c in steps[1]["clicks"]] == ["moved-flipped", "added"]
    assert steps[1]["target"] == 0 and not steps[1]["proposal_deleted"]
    assert steps[1]["proposal"]["raw_text"].startswith("<think>") and steps[1]["chain_start"] is False
    final = record.final_mask()
    assert np.array_equal(final, inner.mask) and np.array_equal(record.truth(), final)
    for entry in steps:
        masks = record.step_masks(entry["index"])
        assert entry["iou_before"] == pytest.approx(iou(masks["mask_before"], final))
        assert entry["iou_after"] == pytest.approx(iou(masks["mask_after"], final))
    assert steps[-1]["iou_after"] == 1.0
    assert np.array_equal(record.step_masks(1)["mask_before"], np.zeros_like(final))
    assert records.count_steps(str(tmp_path / "rec")) == 2


def test_a_deleted_proposal_and_more_steps_after_finish(tmp_path):
    recorder = TrainingRecorder(str(tmp_path))
    inner, target = episode([(0.9, 0.1, True), (0.5, 0.5, True)])
    recording = recorder.record(inner, source="console", truth=target)
    inner.propose()
    inner.apply([Click(30, 30, True, USER)])                     # proposal deleted, own click instead
    recording.finish()
    assert records.read_record(recording.recording.folder).meta["steps"][0]["proposal_deleted"] is True
    inner.apply([Click(80, 50, True, USER)])                     # no proposal pending: a user step
    record = records.read_record(recording.recording.folder)
    assert not record.finished                                      # reopened until finished again
    recording.finish()
    record = records.read_record(recording.recording.folder)
    assert record.finished and record.meta["truth"] == "expert"
    assert [s["decision"] for s in record.steps] == ["edited", "user"]
    assert np.array_equal(record.truth(), target)
    assert record.steps[-1]["iou_after"] == pytest.approx(iou(inner.mask, target))


def test_a_run_records_every_step_and_a_terminate_answer(tmp_path):
    recorder = TrainingRecorder(str(tmp_path))
    inner, _ = episode([(30.5 / 112, 30.5 / 80, True), (80.5 / 112, 50.5 / 80, True)])
    recording = recorder.record(inner, source="continue")
    result = inner.run()
    assert result.stop_reason == "terminated" and len(result.steps) == 2
    record = records.read_record(recording.finish())
    assert record.meta["done"] and record.meta["final_proposal"]["action"] == "Terminate"
    assert len(record.steps) == 2 and record.meta["policy"] == "fixed" and record.meta["segmenter"] == "graphcut"


def test_a_step_that_cannot_be_recorded_is_taken_back(tmp_path):
    recorder = TrainingRecorder(str(tmp_path / "rec"))
    inner, _ = episode([(30.5 / 112, 30.5 / 80, True), (80.5 / 112, 50.5 / 80, True)])
    recording = recorder.record(inner, source="console")
    inner.apply([inner.propose().click])
    kept = inner.mask.copy()
    shutil.rmtree(os.path.join(recording.recording.folder, records.STEPS_DIR))  # e.g. the folder was removed
    with pytest.raises(RecordWriteError, match="taken back. Turn off Record for training"):
        inner.apply([inner.propose().click])
    assert len(inner.steps) == len(recording.recording.steps) == 1 and np.array_equal(inner.mask, kept)
    recording.recording.discard()
    assert recorder.recorded_steps == 0 and not os.path.exists(recording.recording.folder)


def test_bad_input_is_refused_clearly(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        TrainingRecorder(str(tmp_path / "file"))
    recorder = TrainingRecorder(str(tmp_path / "rec"))
    with pytest.raises(ValueError, match="RGB uint8"):
        recorder.start(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="source"):
        recorder.start(np.zeros((4, 4, 3), np.uint8), source="cloud")
    recording = recorder.start(np.zeros((4, 4, 3), np.uint8), name="one")
    with pytest.raises(ValueError, match="already exists"):
        recorder.start(np.zeros((4, 4, 3), np.uint8), name="one")
    with pytest.raises(ValueError, match="shape"):
        recording.add_step(np.zeros((5, 5)), [Click(1, 1, True, USER)], np.zeros((4, 4)))
    with pytest.raises(ValueError, match="at least one"):
        recording.add_step(np.zeros((4, 4)), [], np.zeros((4, 4)))


def test_continue_records_only_when_asked(tmp_path, labelled_folder):
    from ibisagent.cli import main

    image = labelled_folder / "images" / "case0.png"
    truth = labelled_folder / "masks" / "case0.png"
    assert main(["continue", "--image", str(image), "--request", "discs", "--out", str(tmp_path / "a.png"),
                 "--max-steps", "2", "--policy", "simulated", "--truth", str(truth)]) == 0
    assert sorted(os.listdir(tmp_path)) == ["a.png", "a.steps.json"]
    assert main(["continue", "--image", str(image), "--request", "discs", "--out", str(tmp_path / "b.png"),
                 "--max-steps", "2", "--policy", "simulated", "--truth", str(truth),
                 "--record", str(tmp_path / "rec")]) == 0
    (folder,) = records.find_records(str(tmp_path / "rec"))
    record = records.read_record(folder)
    log = json.loads((tmp_path / "b.steps.json").read_text())
    assert record.meta["source"] == "continue" and record.finished and record.meta["truth"] == "expert"
    assert [s["clicks"][0]["x"] for s in record.steps] == [s["clicks"][0]["x"] for s in log["steps"]]


def test_eval_records_every_case(tmp_path, labelled_folder):
    from ibisagent.cli import main

    assert main(["eval", "--images", str(labelled_folder / "images"), "--masks", str(labelled_folder / "masks"),
                 "--out", str(tmp_path / "out"), "--clicks", "3", "--no-progress",
                 "--record", str(tmp_path / "rec")]) == 0
    found = [records.read_record(f) for f in records.find_records(str(tmp_path / "rec"))]
    assert len(found) == 2 and all(r.finished and r.meta["source"] == "eval" for r in found)


def test_recorder_imports_with_numpy_alone():
    probe = ("import sys\nimport ibisagent.training.recorder, ibisagent.training.records\n"
             "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
             "('torch', 'PIL', 'scipy', 'SimpleITK', 'transformers', 'trl', 'fastapi'))\n"
             "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=SOURCE))
    assert done.returncode == 0, done.stderr
