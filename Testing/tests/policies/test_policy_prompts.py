"""Prompt templates: the shipped wording, user folders, placeholders and the messages of a turn."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ibisagent.actions import POSITIVE, parse_response
from ibisagent.imaging import model_view
from ibisagent.policies.base import Observation
from ibisagent.policies.prompts import FIRST, REFINEMENT, TEMPLATE_FILES, fill, load_templates


def observation(masked=False, width=64, height=48, request="Segment the left kidney.", step=0):
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, :, 0] = np.arange(width, dtype=np.uint8)[None, :]
    mask = np.zeros((height, width), dtype=bool)
    if masked:
        mask[5:20, 10:30] = True
    return Observation(image, mask, request, step)


def write_set(folder, system="Be precise.", first="Task: {request}", refinement="Step {step}: {request}"):
    for name, text in zip(TEMPLATE_FILES, (system, first, refinement)):
        (folder / name).write_text(text + "\n", encoding="utf-8")
    return folder


def test_shipped_system_prompt_states_rules_and_a_grammar_example_that_parses():
    system = load_templates().system
    for words in ("medical", "Positive Point", "Negative Point", "Terminate", "green", "<answer>", "four decimals"):
        assert words in system
    example = re.search(r"^<think>$.*?^</action>$", system, re.DOTALL | re.MULTILINE).group(0)
    parsed = parse_response(example)
    assert parsed.ok and parsed.action.kind == POSITIVE and (parsed.action.x, parsed.action.y) == (0.5, 0.25)


def test_empty_mask_gives_the_first_turn_with_the_request_alone():
    turn = load_templates().turn(observation())
    assert turn.kind == FIRST
    assert turn.text == "Segment the left kidney."


def test_a_mask_gives_a_refinement_turn_that_repeats_the_request():
    turn = load_templates().turn(observation(masked=True))
    assert turn.kind == REFINEMENT
    assert "refinement" in turn.text and '"Segment the left kidney."' in turn.text


def test_turn_image_is_the_model_view_of_the_overlay():
    obs = observation(masked=True)
    turn = load_templates().turn(obs)
    assert np.array_equal(np.asarray(turn.image), np.asarray(model_view(obs.image, obs.mask)))
    assert not np.array_equal(np.asarray(turn.image), obs.image)  # the green overlay is drawn


def test_turn_image_is_capped_at_max_pixels():
    turn = load_templates().turn(observation(width=900, height=700), max_pixels=262144)
    assert turn.image.width * turn.image.height <= 262144


def test_messages_hold_system_then_one_user_message_with_one_image_before_the_text():
    turn = load_templates().turn(observation())
    image_part = {"type": "image"}
    messages = turn.messages(image_part)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == [image_part, {"type": "text", "text": "Segment the left kidney."}]


def test_user_folder_replaces_every_template_and_fills_placeholders(tmp_path):
    templates = load_templates(write_set(tmp_path))
    assert templates.folder == str(tmp_path)
    first = templates.turn(observation())
    assert (first.system, first.text) == ("Be precise.", "Task: Segment the left kidney.")
    later = templates.turn(observation(masked=True, step=3))
    assert later.text == "Step 4: Segment the left kidney."


def test_empty_system_template_sends_no_system_message(tmp_path):
    turn = load_templates(write_set(tmp_path, system="")).turn(observation())
    assert turn.system is None
    assert [m["role"] for m in turn.messages({"type": "image"})] == ["user"]


def test_user_folder_must_hold_all_three_files(tmp_path):
    (tmp_path / "system.txt").write_text("x", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="first_turn.txt, refinement.txt"):
        load_templates(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_templates(tmp_path / "nowhere")


def test_a_template_typo_fails_at_load_naming_the_file(tmp_path):
    write_set(tmp_path, refinement="Refine {reqest}")
    with pytest.raises(ValueError, match=r"refinement\.txt uses the unknown placeholder \{reqest\}"):
        load_templates(tmp_path)


def test_fill_handles_escapes_and_rejects_stray_braces():
    assert fill("{{literal}} {request}", {"request": "liver"}) == "{literal} liver"
    with pytest.raises(ValueError, match="unmatched brace"):
        fill("JSON { here", {})
    assert fill("no placeholders (x, y)", {}) == "no placeholders (x, y)"


def test_policy_modules_import_without_torch():
    """The Slicer side and the openai policy must start without torch or transformers."""
    import subprocess
    import sys

    code = (
        "import sys, ibisagent.policies.prompts, ibisagent.policies.openai_api, ibisagent.policies.qwen\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
