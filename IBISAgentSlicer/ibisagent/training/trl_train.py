"""LoRA SFT and GRPO of a Qwen2.5-VL (IBISAgent) checkpoint with TRL's own trainers.

Nothing here trains by hand: this module only chooses the reference's settings and hands the
exported data to ``trl.SFTTrainer`` / ``trl.GRPOTrainer`` (multi-GPU: launch the same command
with ``accelerate launch``, optionally with a DeepSpeed config; see training/README.md).

Settings that follow the reference (``training_scripts/qwen2_5vl_lora_sft.yaml`` and
``grpo.sh``): LoRA rank 8 (alpha 16, LLaMA-Factory's default of twice the rank) on every
linear layer of the language model, vision tower and projector frozen; images capped at 262144
pixels; SFT cutoff 2048 tokens, learning rate 1e-5, cosine schedule, warm-up 10 %, batch 1 with
16 accumulation steps; GRPO with 4 completions per prompt, no KL term (beta 0), learning rate
1e-6 without warm-up (verl's default), and the five rewards scored with this product's segmentation tool.

The output folder holds the LoRA adapter (``adapter_config.json``, ``adapter_model.safetensors``)
and the processor, written by the trainers themselves; so it must be a new (or empty) folder and
no input (`check_out_dir`, before anything is loaded): a trainer saving into the base checkpoint's
folder would replace its configuration and tokenizer files. Serve it with
``--policy qwen --checkpoint BASE --policy-option adapter=OUT``
or merge it (`ibisagent.training.merge`) into a full checkpoint for vLLM.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from .. import safe_io
from ..imaging import MODEL_MAX_PIXELS

#: Every linear layer of the language model; the vision tower (``model.visual``) stays frozen.
LANGUAGE_LINEAR_LAYERS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
TRAINING_NOTE = "ibisagent_training.json"


@dataclass
class TrainingRun:
    """What a run left: the adapter folder, optimizer steps taken and the last logged loss."""

    output_dir: str
    steps: int
    loss: float
    log: list


def check_out_dir(out_dir: str, *inputs: str) -> None:
    """Refuse, before any work, an output folder that is an input (or holds one, or lies inside
    one), that holds files already, or that cannot be written: the trainers write their files
    into it directly."""
    out = os.path.abspath(out_dir)
    for given in inputs:
        if not given:
            continue
        given = os.path.abspath(given)
        inside = out == given or out.startswith(given.rstrip(os.sep) + os.sep) or given.startswith(out + os.sep)
        if inside or safe_io.same_file(out, given):
            raise ValueError(f"--out {out_dir} overlaps the input {given}; write the result to a new folder.")
    if os.path.isdir(out) and os.listdir(out):
        raise ValueError(f"--out {out_dir} already holds files; choose a new folder (nothing is written over).")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out_dir} is a file; give a new folder.")
    safe_io.check_folder_writable(out, "--out")


def lora_config(rank: int = 8, alpha: Optional[int] = None, dropout: float = 0.0):
    from peft import LoraConfig

    if rank < 1:
        raise ValueError(f"--lora-rank must be at least 1; got {rank}.")
    return LoraConfig(r=rank, lora_alpha=alpha or 2 * rank, lora_dropout=dropout,
                      target_modules=LANGUAGE_LINEAR_LAYERS, task_type="CAUSAL_LM")


def load_model(checkpoint: str, device: str = "auto", dtype: Optional[str] = None, max_pixels: int = MODEL_MAX_PIXELS):
    """(model, processor) from a local Qwen2.5-VL folder, the processor capped like the policy's."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from ..policies.qwen import QWEN_MIN_PIXELS, check_checkpoint

    folder = str(check_checkpoint(checkpoint))
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    processor = AutoProcessor.from_pretrained(folder, size={"shortest_edge": QWEN_MIN_PIXELS, "longest_edge": max_pixels},
                                              local_files_only=True)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, dtype=getattr(torch, dtype), local_files_only=True)
    return model, processor, device


def _common_args(out_dir: str, device: str, max_steps: int, epochs: float, learning_rate: float, batch_size: int,
                 grad_accum: int, seed: int, report_to: str, logging_steps: int, warmup: float) -> Dict[str, Any]:
    cuda = device.startswith("cuda")
    return dict(
        output_dir=out_dir, max_steps=max_steps if max_steps > 0 else -1, num_train_epochs=epochs,
        learning_rate=learning_rate, per_device_train_batch_size=batch_size, gradient_accumulation_steps=grad_accum,
        lr_scheduler_type="cosine", warmup_steps=warmup, bf16=cuda, use_cpu=not cuda, seed=seed,
        logging_steps=logging_steps, report_to=report_to, save_strategy="no", dataloader_num_workers=0,
        gradient_checkpointing=cuda,
    )


def _finish(trainer, processor, out_dir: str, note: Dict[str, Any]) -> TrainingRun:
    trainer.save_model(out_dir)
    processor.save_pretrained(out_dir)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    safe_io.write_text(os.path.join(out_dir, TRAINING_NOTE),
                       json.dumps(dict(note, steps=trainer.state.global_step, losses=losses), indent=2))
    return TrainingRun(out_dir, trainer.state.global_step, losses[-1] if losses else math.nan,
                       list(trainer.state.log_history))


def train_sft(data_dir: str, checkpoint: str, out_dir: str, dataset: str = "", max_steps: int = -1,
              epochs: float = 10.0, learning_rate: float = 1e-5, batch_size: int = 1, grad_accum: int = 16,
              max_length: int = 2048, lora_rank: int = 8, device: str = "auto", seed: int = 0,
              report_to: str = "none", logging_steps: int = 10) -> TrainingRun:
    """LoRA SFT on a LLaMA-Factory export (``data_dir``) with ``trl.SFTTrainer``."""
    from trl import SFTConfig, SFTTrainer

    from .trl_data import sft_dataset

    check_out_dir(out_dir, checkpoint, data_dir)
    train = sft_dataset(data_dir, dataset)
    model, processor, device = load_model(checkpoint, device)
    args = SFTConfig(max_length=max_length, **_common_args(out_dir, device, max_steps, epochs, learning_rate,
                                                           batch_size, grad_accum, seed, report_to, logging_steps, 0.1))
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=processor,
                         peft_config=lora_config(lora_rank))
    trainer.train()
    return _finish(trainer, processor, out_dir, {"stage": "sft", "base": os.path.abspath(checkpoint),
                                                 "data": os.path.abspath(data_dir), "samples": len(train)})


def train_grpo(parquet_path: str, checkpoint: str, out_dir: str, max_steps: int = -1, epochs: float = 1.0,
               learning_rate: float = 1e-6, num_generations: int = 4, prompts_per_step: int = 1,
               grad_accum: int = 1, max_completion_length: int = 512, temperature: float = 1.0,
               lora_rank: int = 8, segmenter: Optional[str] = None, tool_options: Optional[Dict[str, Any]] = None,
               device: str = "auto", seed: int = 0, report_to: str = "none", logging_steps: int = 10,
               use_vllm: bool = False, rollout_func: Optional[Callable] = None) -> TrainingRun:
    """GRPO on a verl export with ``trl.GRPOTrainer`` and the five rewards.

    Each optimizer step sees ``prompts_per_step`` x ``grad_accum`` prompts, ``num_generations``
    completions each. ``use_vllm`` generates with vLLM colocated on the training GPUs (TRL's
    own integration; needs the vllm package). ``rollout_func`` is TRL's hook for a custom
    generation backend, passed through unchanged.
    """
    from trl import GRPOConfig, GRPOTrainer

    from ..segmenters import DEFAULT_SEGMENTER
    from .scoring import RewardScorer
    from .trl_data import grpo_dataset
    from .trl_rewards import make_reward_function

    if num_generations < 2:
        raise ValueError(f"--num-generations must be at least 2 (GRPO compares completions); got {num_generations}.")
    check_out_dir(out_dir, checkpoint, parquet_path)
    train = grpo_dataset(parquet_path)
    scorer = RewardScorer(segmenter_name=segmenter or DEFAULT_SEGMENTER, **(tool_options or {}))
    model, processor, device = load_model(checkpoint, device)
    common = _common_args(out_dir, device, max_steps, epochs, learning_rate, prompts_per_step * num_generations,
                          grad_accum, seed, report_to, logging_steps, 0.0)
    vllm = {"use_vllm": True, "vllm_mode": "colocate"} if use_vllm else {}
    args = GRPOConfig(num_generations=num_generations, max_completion_length=max_completion_length,
                      temperature=temperature, beta=0.0, **vllm, **common)
    extra = {} if rollout_func is None else {"rollout_func": rollout_func}
    trainer = GRPOTrainer(model=model, reward_funcs=[make_reward_function(scorer)], args=args, train_dataset=train,
                          processing_class=processor, peft_config=lora_config(lora_rank), **extra)
    trainer.train()
    return _finish(trainer, processor, out_dir, {"stage": "grpo", "base": os.path.abspath(checkpoint),
                                                 "data": os.path.abspath(parquet_path), "samples": len(train),
                                                 "segmenter": scorer.segmenter.name})
