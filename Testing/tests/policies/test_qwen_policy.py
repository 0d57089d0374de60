"""The qwen policy, loaded from a tiny random Qwen2.5-VL checkpoint folder (see conftest.py)
through the same code path as a user's IBISAgent checkpoint."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ibisagent.episode import STOP_UNPARSEABLE, Episode
from ibisagent.policies import build_policy
from ibisagent.policies.base import Observation
from ibisagent.policies.prompts import TEMPLATE_FILES
from ibisagent.segmenters.base import Segmenter

pytest.importorskip("torch")
pytest.importorskip("transformers")

REQUEST = "Can you find a liver in this image?"


@pytest.fixture(scope="session")
def policy(tiny_qwen_dir):
    built = build_policy("qwen", checkpoint=str(tiny_qwen_dir), device="cpu", max_new_tokens=8)
    yield built
    built.close()


def scene(width=90, height=60, masked=False, request=REQUEST):
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), dtype=bool)
    if masked:
        mask[10:40, 20:50] = True
    return Observation(image, mask, request, 0)


def test_policy_returns_text_and_timings(policy):
    text = policy.respond(scene())
    assert isinstance(text, str)
    timings = policy.last_timings
    assert 1 <= timings["new_tokens"] <= 8
    assert timings["generate_s"] > 0 and timings["first_token_s"] is not None
    assert "cpu" in policy.description and "float32" in policy.description


def test_prompt_holds_system_rules_image_tokens_and_request(policy):
    policy.respond(scene())
    prompt = policy.last_prompt
    assert prompt.count("<|vision_start|>") == 1 and prompt.count("<|vision_end|>") == 1
    # 90 x 60 is resized to 84 x 56 (multiples of 28): 3 x 2 merged 28-pixel patches.
    assert prompt.count("<|image_pad|>") == 6
    assert "precise medical image segmentation agent" in prompt
    assert prompt.index("<|vision_end|>") < prompt.index(REQUEST)
    assert prompt.endswith("<|im_start|>assistant\n")


def test_refinement_prompt_repeats_the_request(policy):
    policy.respond(scene(masked=True))
    assert "refinement step" in policy.last_prompt and f'"{REQUEST}"' in policy.last_prompt


def test_large_images_are_capped_at_262144_pixels(policy):
    policy.respond(scene(width=1000, height=700))
    # model_view makes it 612 x 428 (<= 262144 pixels); the processor rounds to 616 x 420:
    # 22 x 15 merged patches.
    assert policy.last_prompt.count("<|image_pad|>") == 22 * 15
    assert policy.processor.image_processor.size["longest_edge"] == 262144


def test_greedy_decoding_is_deterministic(policy):
    assert policy.respond(scene()) == policy.respond(scene())


class NoSegmentation(Segmenter):
    """The episode must stop on the policy's output before any segmentation happens."""

    name = "none"

    def _embed(self, image):
        return None

    def _predict(self, image_state, clicks, prior_mask, prior_state):
        raise AssertionError("an unparseable proposal must not reach the segmentation tool")


def test_random_weights_make_the_episode_stop_as_unparseable(policy):
    observation = scene()
    result = Episode(observation.image, NoSegmentation(), policy, REQUEST).run()
    assert result.stop_reason == STOP_UNPARSEABLE
    assert result.steps == [] and len(result.proposals) == 1
    assert result.proposals[0].error and result.proposals[0].policy == "qwen"


def test_user_prompt_folder_is_used(tiny_qwen_dir, tmp_path):
    for name, text in zip(TEMPLATE_FILES, ("", "Outline: {request}", "Again: {request}")):
        (tmp_path / name).write_text(text, encoding="utf-8")
    own = build_policy("qwen", checkpoint=tiny_qwen_dir, device="cpu", max_new_tokens=1, prompts_dir=str(tmp_path))
    own.respond(scene())
    assert "Outline: " + REQUEST in own.last_prompt
    assert "segmentation agent" not in own.last_prompt  # empty system.txt: no system rules
    own.close()
    own.close()
    with pytest.raises(RuntimeError, match="closed"):
        own.respond(scene())


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; download manglu3935/IBIS"):
        build_policy("qwen", checkpoint=tmp_path / "qwen2_5vl-7b-RL")


def test_folder_without_weights_is_a_clear_error(tiny_qwen_dir, tmp_path):
    shutil.copy(tiny_qwen_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="has no weights"):
        build_policy("qwen", checkpoint=tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        build_policy("qwen", checkpoint=tmp_path)


def test_another_model_type_is_refused(tiny_qwen_dir, tmp_path):
    for item in tiny_qwen_dir.iterdir():
        shutil.copy(item, tmp_path / item.name)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model_type"] = "llama"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="needs a Qwen2.5-VL"):
        build_policy("qwen", checkpoint=tmp_path)


def test_folder_without_chat_template_is_a_clear_error(tiny_qwen_dir, tmp_path):
    for item in tiny_qwen_dir.iterdir():
        if item.name != "chat_template.jinja":
            shutil.copy(item, tmp_path / item.name)
    with pytest.raises(FileNotFoundError, match="no chat template"):
        build_policy("qwen", checkpoint=tmp_path, device="cpu")


def test_bad_options_are_refused_before_loading(tiny_qwen_dir):
    with pytest.raises(ValueError, match="dtype"):
        build_policy("qwen", checkpoint=tiny_qwen_dir, dtype="int8")
    with pytest.raises(ValueError, match="min_pixels"):
        build_policy("qwen", checkpoint=tiny_qwen_dir, max_pixels=1000)
