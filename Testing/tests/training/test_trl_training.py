"""LoRA SFT and GRPO through TRL's real trainers on exported records, with the tiny random
Qwen2.5-VL on the CPU: losses are finite, LoRA weights move, and the saved adapter loads through
the ``qwen`` policy (directly, and merged into a checkpoint folder)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")
torch = pytest.importorskip("torch")
safetensors = pytest.importorskip("safetensors.torch")

from ibisagent.policies import build_policy  # noqa: E402
from ibisagent.policies.base import Observation  # noqa: E402
from ibisagent.training.export_llamafactory import export_llamafactory  # noqa: E402
from ibisagent.training.export_verl import export_verl  # noqa: E402
from ibisagent.training.merge import merge_adapter  # noqa: E402
from ibisagent.training.trl_train import train_grpo, train_sft  # noqa: E402

pytestmark = pytest.mark.slow


def lora_b(folder):
    """The adapter's LoRA B matrices (PEFT starts them at zero)."""
    weights = safetensors.load_file(str(folder / "adapter_model.safetensors"))
    found = {name: tensor for name, tensor in weights.items() if "lora_B" in name}
    assert found and not any("visual" in name for name in weights), sorted(weights)
    return found


@pytest.fixture(scope="module")
def sft_adapter(cold_start_records, tiny_qwen_dir, tmp_path_factory):
    data = tmp_path_factory.mktemp("lf")
    export_llamafactory(str(cold_start_records), str(data), log=lambda line: None)
    out = tmp_path_factory.mktemp("sft")
    run = train_sft(str(data), str(tiny_qwen_dir), str(out), max_steps=2, learning_rate=1e-2, grad_accum=1,
                    device="cpu", logging_steps=1)
    return out, run


def test_two_sft_steps_train_the_language_model_lora(sft_adapter):
    out, run = sft_adapter
    assert run.steps == 2
    losses = [entry["loss"] for entry in run.log if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert any(float(b.abs().max()) > 0 for b in lora_b(out).values())
    note = json.loads((out / "ibisagent_training.json").read_text())
    assert note["stage"] == "sft" and note["steps"] == 2


def test_the_adapter_loads_through_the_qwen_policy(sft_adapter, tiny_qwen_dir, tmp_path):
    out, _ = sft_adapter
    base = build_policy("qwen", checkpoint=str(tiny_qwen_dir), device="cpu", max_new_tokens=4)
    tuned = build_policy("qwen", checkpoint=str(tiny_qwen_dir), device="cpu", max_new_tokens=4, adapter=str(out))
    name = "model.language_model.layers.0.self_attn.q_proj.weight"
    base_weight = dict(base.model.named_parameters())[name]
    tuned_weight = dict(tuned.model.named_parameters())[name]
    assert not torch.equal(base_weight, tuned_weight) and "LoRA" in tuned.description
    image = np.random.default_rng(0).integers(0, 256, (56, 84, 3), dtype=np.uint8)
    assert isinstance(tuned.respond(Observation(image, np.zeros((56, 84), bool), "Find the liver.", 0)), str)
    merged = merge_adapter(str(out), str(tmp_path / "merged"), dtype="float32")
    served = build_policy("qwen", checkpoint=merged, device="cpu", max_new_tokens=4)
    assert torch.allclose(dict(served.model.named_parameters())[name], tuned_weight, atol=1e-6)
    with pytest.raises(ValueError, match="already exists"):
        merge_adapter(str(out), merged)
    for policy in (base, tuned, served):
        policy.close()


def scripted_rollouts(texts):
    """A TRL ``rollout_func`` answering each prompt with the next of ``texts`` (TRL's hook for a
    custom generation backend), so one GRPO group holds a good and a bad answer."""
    answers = iter(texts * 100)

    def rollout(prompts, trainer):
        processor = trainer.processing_class
        end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
        prompt_ids, completion_ids = [], []
        for prompt in prompts:
            encoded = processor.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=True)
            prompt_ids.append(list(np.asarray(encoded["input_ids"]).reshape(-1)))
            completion_ids.append(processor.tokenizer(next(answers), add_special_tokens=False)["input_ids"] + [end])
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}

    return rollout


def test_one_grpo_step_with_the_five_rewards(cold_start_records, tiny_qwen_dir, tmp_path):
    export_verl(str(cold_start_records), str(tmp_path / "verl"), log=lambda line: None)
    good = "<think>\nThe disc on the left is missed.\n</think>\n<action>\nPositive Point (0.2723, 0.3812)\n</action>"
    run = train_grpo(str(tmp_path / "verl" / "train.parquet"), str(tiny_qwen_dir), str(tmp_path / "grpo"),
                     max_steps=1, num_generations=2, learning_rate=1e-2, device="cpu", logging_steps=1,
                     rollout_func=scripted_rollouts([good, "no idea"]))
    (entry,) = [e for e in run.log if "loss" in e]
    assert run.steps == 1 and math.isfinite(entry["loss"])
    assert entry["ibisagent/format"] == pytest.approx(0.5)          # one of the two answers is well formed
    assert entry["reward_std"] > 0                                   # so the group has an advantage to learn
    assert any(float(b.abs().max()) > 0 for b in lora_b(tmp_path / "grpo").values())


def test_grpo_generates_with_the_model_itself(cold_start_records, tiny_qwen_dir, tmp_path):
    export_verl(str(cold_start_records), str(tmp_path / "verl"), log=lambda line: None)
    run = train_grpo(str(tmp_path / "verl" / "train.parquet"), str(tiny_qwen_dir), str(tmp_path / "grpo"),
                     max_steps=1, num_generations=2, max_completion_length=6, device="cpu", logging_steps=1)
    (entry,) = [e for e in run.log if "loss" in e]
    assert math.isfinite(entry["loss"]) and entry["completions/mean_length"] <= 6
    # a random model writes no grammar: every term but length is 0, so the reward is length / 5
    assert entry["ibisagent/format"] == 0.0 and entry["reward"] == pytest.approx(entry["ibisagent/length"] / 5)
