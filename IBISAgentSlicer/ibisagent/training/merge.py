"""Merge a LoRA adapter into its base checkpoint: a full Qwen2.5-VL folder that the ``qwen``
policy (``--policy qwen --checkpoint OUT``), vLLM (``vllm serve OUT``) and the next training
stage load like the released IBISAgent checkpoint. PEFT does the merge (``merge_and_unload``).
"""

from __future__ import annotations

import json
import os
from typing import Optional

from .trl_train import TRAINING_NOTE, check_out_dir


def base_of(adapter_dir: str) -> Optional[str]:
    """The base checkpoint an adapter was trained from, when this product trained it."""
    note = os.path.join(adapter_dir, TRAINING_NOTE)
    if not os.path.isfile(note):
        return None
    with open(note, encoding="utf-8") as handle:
        return json.load(handle).get("base")


def merge_adapter(adapter_dir: str, out_dir: str, base: Optional[str] = None, dtype: str = "bfloat16") -> str:
    """Write base + adapter as one checkpoint folder ``out_dir`` (refused if it exists)."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from ..policies.qwen import check_checkpoint, merge_lora_adapter

    base = base or base_of(adapter_dir)
    if not base:
        raise ValueError(f"Give the base checkpoint with --base: {adapter_dir} does not say which one it was trained from.")
    if os.path.exists(out_dir):
        raise ValueError(f"--out {out_dir} already exists; choose a new folder for the merged checkpoint.")
    check_out_dir(out_dir, adapter_dir, base)
    folder = str(check_checkpoint(base))
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, dtype=getattr(torch, dtype), local_files_only=True)
    merged = merge_lora_adapter(model, adapter_dir)
    merged.save_pretrained(out_dir)
    AutoProcessor.from_pretrained(folder, local_files_only=True).save_pretrained(out_dir)
    return out_dir
