"""Cold-start records -> LLaMA-Factory JSON and verl parquet, read back as those stacks read them,
and the round trip record -> export -> reward."""

from __future__ import annotations

import base64
import json
import zlib

import numpy as np
import pytest
from PIL import Image
from training_data import two_blobs

from ibisagent.actions import parse_response
from ibisagent.clicks import USER, USER_MOVED, Click
from ibisagent.episode import Episode
from ibisagent.imaging import model_view, to_rgb
from ibisagent.metrics import iou
from ibisagent.policies.prompts import load_templates
from ibisagent.segmenters import build_segmenter
from ibisagent.training import records
from ibisagent.training.export_llamafactory import export_llamafactory
from ibisagent.training.export_verl import export_verl
from ibisagent.training.recorder import TrainingRecorder
from ibisagent.training.samples import iter_samples
from ibisagent.training.training_images import REFERENCE, training_image
from ibisagent.training.verl_reward import compute_score

pq = pytest.importorskip("pyarrow.parquet")
coco_mask = pytest.importorskip("pycocotools.mask")

REWARD_FIELDS = ("clicklist", "labels", "original_image_name", "gt_mask_name", "image_size", "current_gt_mask",
                 "pre_iou", "current_step", "optimal_step", "click_groups", "start_mask_name")


def test_cold_start_records_hold_multi_step_trajectories(cold_start_records):
    found = [records.read_record(f) for f in records.find_records(str(cold_start_records))]
    assert [r.id for r in found] == ["case0", "case1"]
    for record in found:
        assert record.finished and record.meta["done"] and record.meta["truth"] == "expert"
        assert len(record.steps) >= 2
        assert all(isinstance(c["positive"], bool) for s in record.steps for c in s["clicks"])
        assert record.steps[-1]["iou_after"] >= 0.95
        first = record.steps[0]["proposal"]["reasoning"]
        assert "initialisation step" in first and "brighter than its surroundings" in first
        later = record.steps[1]["proposal"]["reasoning"]
        assert "misses part of" in later and "separate from the current mask" in later


def test_llamafactory_export(cold_start_records, tmp_path):
    summary = export_llamafactory(str(cold_start_records), str(tmp_path), log=lambda line: None)
    rows = json.loads((tmp_path / "ibisagent_sft.json").read_text())
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert info == {"ibisagent_sft": {
        "file_name": "ibisagent_sft.json", "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                 "system_tag": "system"}}}
    samples, _ = iter_samples(str(cold_start_records))
    assert summary["samples"] == len(rows) == len(samples)
    templates = load_templates()
    for row, sample in zip(rows, samples):
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["system", "user", "assistant"]
        assert row["messages"][0]["content"] == templates.system
        user = row["messages"][1]["content"]
        assert user.startswith("<image>") and user.count("<image>") == len(row["images"]) == 1
        answer = parse_response(row["messages"][2]["content"])
        assert answer.ok and answer.reasoning
        picture = np.asarray(Image.open(tmp_path / row["images"][0]))
        # exactly the picture the policy sends for this observation
        assert np.array_equal(picture, np.asarray(model_view(sample.image, sample.mask)))
    assert parse_response(rows[-1]["messages"][2]["content"]).action.kind == "terminate"
    assert "<answer>" in rows[-1]["messages"][2]["content"]
    with pytest.raises(ValueError, match="already holds an export"):
        export_llamafactory(str(cold_start_records), str(tmp_path), log=lambda line: None)


def test_verl_export_reads_back_with_every_reward_field(cold_start_records, tmp_path):
    export_verl(str(cold_start_records), str(tmp_path), log=lambda line: None)
    table = pq.read_table(tmp_path / "train.parquet")
    assert set(table.column_names) == {"data_source", "prompt", "images", "ability", "reward_model", "extra_info"}
    rows = table.to_pylist()
    samples, _ = iter_samples(str(cold_start_records))
    assert len(rows) == len(samples)
    for row, sample in zip(rows, samples):
        info = row["extra_info"]
        assert row["data_source"] == "med-seg" and row["reward_model"]["style"] == "rule"
        assert all(info[key] is not None for key in REWARD_FIELDS)
        assert row["prompt"][-1]["content"].startswith("<image>")
        assert row["reward_model"]["ground_truth"] == sample.action.to_text() == info["answer"]
        assert info["current_step"] == sample.step and info["optimal_step"] == 5
        assert info["pre_iou"] == pytest.approx(iou(sample.mask, sample.truth))
        assert info["labels"] == [c.label for c in sample.history_clicks]
        assert info["clicklist"] == [[c.x, c.y] for c in sample.history_clicks]
        assert info["image_size"] == [112, 80]
        picture = Image.open(__import__("io").BytesIO(row["images"][0]["bytes"]))
        assert np.array_equal(np.asarray(picture), np.asarray(model_view(sample.image, sample.mask)))
        counts = zlib.decompress(base64.b64decode(info["current_gt_mask"]))
        decoded = coco_mask.decode({"counts": counts, "size": [80, 112]}).astype(bool)
        assert np.array_equal(decoded, sample.after)
        assert np.array_equal(np.asarray(Image.open(info["gt_mask_name"])) > 127, sample.truth)


def test_round_trip_record_export_reward(cold_start_records, tmp_path):
    """The expert's own answers, scored by the verl entry with the tool in process, earn what the
    recorded masks say they should."""
    export_verl(str(cold_start_records), str(tmp_path / "verl"), log=lambda line: None)
    export_llamafactory(str(cold_start_records), str(tmp_path / "lf"), log=lambda line: None)
    rows = pq.read_table(tmp_path / "verl" / "train.parquet").to_pylist()
    answers = json.loads((tmp_path / "lf" / "ibisagent_sft.json").read_text())
    samples, _ = iter_samples(str(cold_start_records))
    for row, answer, sample in zip(rows, answers, samples):
        text = answer["messages"][-1]["content"]
        terms = compute_score(row["data_source"], text, row["reward_model"]["ground_truth"], row["extra_info"])
        after_iou = iou(sample.after, sample.truth)
        assert terms["format"] == 1.0 and terms["length"] == 1.0
        assert terms["step_iou"] == pytest.approx(after_iou)  # the replay reproduces the recorded mask
        if sample.action.is_point:
            assert terms["placement"] == 1.0 and terms["progress"] == 1.0
        else:
            assert terms["placement"] == 0.0 and terms["progress"] == 0.0
        assert terms["answer"] == (3.0 if after_iou > 0.8 else 2.0 if after_iou > 0.7 else 1.0 if after_iou > 0.5 else 0.0)
        wrong = text.replace("Positive Point", "Negative Point")
        if sample.action.is_point:
            assert compute_score("med-seg", wrong, "", row["extra_info"])["placement"] == -1.0
    with pytest.raises(ValueError, match="med-seg"):
        compute_score("gsm8k", "x", "", rows[0]["extra_info"])


def test_a_person_s_correction_becomes_the_target(tmp_path):
    grey, target = two_blobs()
    image = to_rgb(grey)

    class Wrong:
        name = "wrong"

        def respond(self, observation):
            return "<think>\nhere\n</think>\n<action>\nNegative Point (0.9000, 0.9000)\n</action>"

    episode = Episode(image, build_segmenter("graphcut"), Wrong(), request="Both discs.")
    recording = TrainingRecorder(str(tmp_path / "rec")).record(episode, source="panel")
    proposal = episode.propose()
    episode.apply([Click(30, 30, True, USER_MOVED)])   # moved onto the disc and flipped
    episode.propose()
    episode.apply([Click(80, 50, True, USER)])          # proposal deleted, the person's click instead
    recording.finish()
    samples, _ = iter_samples(str(tmp_path / "rec"))
    assert proposal.click.positive is False
    assert [s.action.to_text() for s in samples] == [
        "Positive Point (0.2723, 0.3812)", "Positive Point (0.7188, 0.6312)", "Terminate"]
    assert all(parse_response(s.response).ok for s in samples)
    assert "misses part of" in samples[1].response
    export_verl(str(tmp_path / "rec"), str(tmp_path / "verl"), log=lambda line: None)
    rows = pq.read_table(tmp_path / "verl" / "train.parquet").to_pylist()
    assert [r["reward_model"]["ground_truth"] for r in rows] == [s.action.to_text() for s in samples]
    assert rows[1]["extra_info"]["clicklist"] == [[30, 30]] and rows[2]["extra_info"]["click_groups"] == [1, 1]


def test_the_reference_overlay_is_a_choice(cold_start_records, tmp_path):
    grey, target = two_blobs()
    image = to_rgb(grey)
    ours = np.asarray(training_image(image, target))
    theirs = np.asarray(training_image(image, target, REFERENCE))
    assert np.array_equal(ours, np.asarray(model_view(image, target)))
    y, x = np.argwhere(target)[0]
    expected = np.array([0, 255, 0]) * 128 / 255 + image[y, x] * (1 - 128 / 255)
    assert np.abs(theirs[y, x].astype(float) - expected).max() <= 1.0
    assert np.array_equal(theirs[~target], image[~target]) and not np.array_equal(ours, theirs)
    export_llamafactory(str(cold_start_records), str(tmp_path), overlay=REFERENCE, log=lambda line: None)
    first = json.loads((tmp_path / "ibisagent_sft.json").read_text())[1]["images"][0]
    assert not np.array_equal(np.asarray(Image.open(tmp_path / first)), ours)
    with pytest.raises(ValueError, match="overlay"):
        training_image(image, target, "blue")


def test_unfinished_records_are_left_out_with_a_reason(tmp_path):
    recorder = TrainingRecorder(str(tmp_path))
    recording = recorder.start(np.zeros((8, 8, 3), np.uint8), name="crashed")
    recording.add_step(np.zeros((8, 8)), [Click(1, 1, True, USER)], np.ones((8, 8)))
    samples, problems = iter_samples(str(tmp_path))
    assert samples == [] and "never finished" in problems[0]
    with pytest.raises(ValueError, match="no finished trajectory"):
        export_verl(str(tmp_path), str(tmp_path / "out"), log=lambda line: None)


def test_two_splits_share_a_folder_and_overwrite_touches_only_its_own(cold_start_records, tmp_path):
    import shutil

    records = sorted(p for p in cold_start_records.iterdir() if p.is_dir())
    for split, record in zip(("train", "val"), records):
        shutil.copytree(record, tmp_path / split / record.name)
    out = tmp_path / "rl"
    export_verl(str(tmp_path / "train"), str(out), split="train", log=lambda line: None)
    export_verl(str(tmp_path / "val"), str(out), split="test", log=lambda line: None)
    test_files = {p: p.read_bytes() for p in (out / "files" / records[1].name).iterdir()}
    test_files[out / "test.parquet"] = (out / "test.parquet").read_bytes()
    with pytest.raises(ValueError, match="already holds an export"):
        export_verl(str(tmp_path / "train"), str(out), split="train", log=lambda line: None)
    export_verl(str(tmp_path / "train"), str(out), split="train", overwrite=True, log=lambda line: None)
    assert all(path.read_bytes() == data for path, data in test_files.items())
    assert pq.read_table(out / "train.parquet").num_rows > 0
