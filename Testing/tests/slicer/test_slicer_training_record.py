"""Recording for training from the Slicer logic ("Record for training" in the panel), on a real
MRML scene: accepted and edited steps are recorded with exactly the picture the model was shown,
skipped proposals are not, undo removes, the count follows, and recording off writes nothing."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from slicer_agents import DiskSegmenter, ScriptedPolicy, point
from test_slicer_logic import local_logic, make_case

from IBISAgentLib import AgentStepError
from IBISAgentLib.slice_labelmap import SliceLabelmap
from ibisagent.clicks import USER
from ibisagent.policies.prompts import load_templates
from ibisagent.training import records
from ibisagent.training.training_images import training_image


def only_record(folder):
    (path,) = records.find_records(str(folder))
    return records.read_record(path)


def assert_model_saw(record, seen):
    """Each recorded step's observation is, bit for bit, what the policy was given, and the
    picture the export renders from it is the one this product sends the model."""
    templates = load_templates()
    for entry, observation in zip(record.steps, seen):
        mask_before = record.step_masks(entry["index"])["mask_before"]
        assert np.array_equal(record.image(), observation.image)
        assert np.array_equal(mask_before, observation.mask)
        sent = np.asarray(templates.turn(observation).image)
        assert np.array_equal(np.asarray(training_image(record.image(), mask_before)), sent)


def test_accepted_and_edited_steps_are_recorded_skipped_ones_not_and_undo_removes(scene, tmp_path):
    volume, segmentation, ids, _ = make_case(scene, "flipped-permuted", "Red")
    policy = ScriptedPolicy([point(0.5, 0.5), point(0.3, 0.4), point(0.9, 0.9), point(0.6, 0.6)])
    logic = local_logic(policy)
    logic.setTrainingRecord(str(tmp_path / "rec"), source="panel")
    logic.startEpisode(volume, segmentation, ids[0], view="Red")
    markups = logic.workedSlice.markups
    logic.proposeNext()
    logic.acceptProposal()                                       # accepted as proposed
    logic.proposeNext()
    markups.flip(0)                                              # edited: flipped, plus a point of the user's
    markups.add_user_point(2, 2, True)
    logic.acceptProposal()
    assert logic.recordedSteps == 2
    logic.proposeNext()
    logic.skipProposal()                                         # skipped: no trace
    assert logic.recordedSteps == 2
    logic.proposeNext()
    logic.acceptProposal()
    assert logic.recordedSteps == 3 and len(only_record(tmp_path / "rec").steps) == 3  # written at once
    assert logic.undo()                                          # undone: removed
    assert logic.recordedSteps == logic.recordFolderSteps == 2
    record = only_record(tmp_path / "rec")
    assert not os.path.exists(os.path.join(record.folder, records.step_file(3))) and not record.finished
    kept = logic.workedSlice.labelmap.read()
    logic.finish()

    record = only_record(tmp_path / "rec")
    assert record.finished and record.meta["source"] == "panel"
    assert (record.meta["policy"], record.meta["segmenter"]) == ("scripted", "disk")
    assert [s["decision"] for s in record.steps] == ["accepted", "edited"]
    assert [c["edit"] for c in record.steps[1]["clicks"]] == ["flipped", "added"]
    assert np.array_equal(record.final_mask(), kept) and record.steps[-1]["iou_after"] == 1.0
    assert_model_saw(record, [policy.seen[0], policy.seen[1]])
    assert logic.recordedSteps == 2  # the count stays with the folder until recording is turned off
    logic.setTrainingRecord(None)
    assert logic.recordedSteps == logic.recordFolderSteps == 0


def test_a_hand_edit_is_what_the_next_step_records(scene, tmp_path):
    volume, segmentation, ids, _ = make_case(scene, "ras", "Red")
    policy = ScriptedPolicy([point(0.5, 0.5), point(0.2, 0.2)])
    logic = local_logic(policy)
    logic.setTrainingRecord(str(tmp_path))
    logic.startEpisode(volume, segmentation, ids[0], view="Red")
    logic.proposeNext()
    logic.acceptProposal()
    hand = SliceLabelmap(segmentation, ids[0], volume, logic.workedSlice.geometry)  # what the Segment Editor does
    edited = hand.read()
    edited[0:3, 0:3] = True
    hand.write(edited)
    logic.proposeNext()
    logic.acceptProposal()
    logic.finish()
    record = only_record(tmp_path)
    assert record.meta["source"] == "console"
    assert np.array_equal(record.step_masks(2)["mask_before"], edited) and record.steps[1]["chain_start"]
    assert_model_saw(record, policy.seen)


def test_recording_off_writes_nothing(scene, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    volume, segmentation, ids, _ = make_case(scene, "lps", "Red")
    logic = local_logic(ScriptedPolicy([point(0.5, 0.5), point(0.3, 0.3)]))
    result = logic.continueMask(volume, segmentation, ids[0], "segment the box", view="Red")
    assert len(result["steps"]) == 2 and logic.recordedSteps == 0
    logic.setTrainingRecord(str(tmp_path / "rec"))
    logic.setTrainingRecord("")
    logic.continueMask(volume, segmentation, ids[0], "segment the box", view="Red")
    assert os.listdir(tmp_path) == ["rec"] and os.listdir(tmp_path / "rec") == []


def test_turning_recording_on_and_off_during_an_episode(scene, tmp_path):
    volume, segmentation, ids, _ = make_case(scene, "lps", "Red")
    logic = local_logic(ScriptedPolicy([point(0.5, 0.5), point(0.3, 0.3), point(0.7, 0.7)]))
    logic.startEpisode(volume, segmentation, ids[0], view="Red")
    logic.proposeNext()
    logic.acceptProposal()                                       # before recording: not recorded
    after_first = logic.workedSlice.session.mask.copy()
    logic.setTrainingRecord(str(tmp_path))
    logic.proposeNext()
    logic.acceptProposal()
    logic.setTrainingRecord(None)                                # finished here, with the mask as it is now
    logic.proposeNext()
    logic.acceptProposal()                                       # after recording: not recorded
    logic.finish()
    record = only_record(tmp_path)
    assert record.finished and len(record.steps) == 1
    assert np.array_equal(record.initial_mask(), after_first)
    assert np.array_equal(record.step_masks(1)["mask_before"], after_first)


def test_an_abandoned_run_leaves_no_record(scene, tmp_path):
    volume, segmentation, ids, _ = make_case(scene, "lps", "Red")
    tool = DiskSegmenter()
    tool.fail_on_call = 2
    logic = local_logic(ScriptedPolicy([point(0.5, 0.5), point(0.3, 0.3)]), tool)
    logic.setTrainingRecord(str(tmp_path))
    with pytest.raises(AgentStepError):
        logic.continueMask(volume, segmentation, ids[0], "segment the box", view="Red")
    assert records.find_records(str(tmp_path)) == [] and logic.recordedSteps == 0


def test_a_folder_that_cannot_be_used_is_refused(scene, tmp_path):
    (tmp_path / "file").write_text("x")
    logic = local_logic(ScriptedPolicy([]))
    with pytest.raises(ValueError, match="is a file"):
        logic.setTrainingRecord(str(tmp_path / "file"))
    with pytest.raises(ValueError, match="record source"):
        logic.setTrainingRecord(str(tmp_path / "rec"), source="cloud")
    assert logic.trainingRecord is None


def test_remote_episode_records_what_the_servers_model_saw(scene, server, tmp_path):
    pytest.importorskip("fastapi", reason="the agent server needs the 'server' extra (fastapi, uvicorn)")
    from slicer_server import remote_logic

    volume, segmentation, ids, _ = make_case(scene, "flipped-permuted", "Green")
    policy = ScriptedPolicy([point(0.5, 0.5), point(0.25, 0.6)])
    server.policy.inner = policy
    logic = remote_logic(server)
    logic.setTrainingRecord(str(tmp_path), source="panel")
    logic.startEpisode(volume, segmentation, ids[0], view="Green")
    logic.proposeNext()
    logic.acceptProposal()
    logic.proposeNext()
    logic.workedSlice.markups.proposals.RemoveNthControlPoint(0)    # deleted, the user's own point instead
    logic.workedSlice.markups.add_user_point(3, 3, True)
    logic.acceptProposal()
    kept = logic.workedSlice.labelmap.read()
    logic.finish()
    record = only_record(tmp_path)
    assert (record.meta["policy"], record.meta["segmenter"]) == ("switch", "graphcut")
    assert [s["decision"] for s in record.steps] == ["accepted", "edited"] and record.steps[1]["proposal_deleted"]
    assert record.steps[1]["clicks"][0]["origin"] == USER
    assert np.array_equal(record.final_mask(), kept)
    assert_model_saw(record, policy.seen[:2])


def test_a_step_that_cannot_be_recorded_leaves_the_segment_as_it_was(scene, tmp_path):
    volume, segmentation, ids, _ = make_case(scene, "lps", "Red")
    logic = local_logic(ScriptedPolicy([point(0.5, 0.5), point(0.3, 0.3)]))
    logic.setTrainingRecord(str(tmp_path))
    logic.startEpisode(volume, segmentation, ids[0], view="Red")
    logic.proposeNext()
    logic.acceptProposal()
    before = logic.workedSlice.labelmap.read()
    shutil.rmtree(records.find_records(str(tmp_path))[0])  # e.g. the folder was deleted meanwhile
    logic.proposeNext()
    with pytest.raises(AgentStepError, match="Turn off Record for training") as failure:
        logic.acceptProposal()
    assert failure.value.kind == "record"
    assert np.array_equal(logic.workedSlice.labelmap.read(), before) and len(logic.workedSlice.session.steps) == 1
