"""The ``qwen`` policy: an IBISAgent checkpoint (Qwen2.5-VL) run in-process with transformers.

Why in-process: one workstation with a GPU needs no model server. (Many workstations sharing one
GPU deployment use the ``openai`` policy against vLLM instead.)

Running the released checkpoint: download the Hugging Face repo ``manglu3935/IBIS`` yourself and
point ``checkpoint`` at its ``qwen2_5vl-7b-RL`` folder::

    huggingface-cli download manglu3935/IBIS --include "qwen2_5vl-7b-RL/*" --local-dir /models/IBIS
    ibisagent ... --policy qwen --policy-option checkpoint=/models/IBIS/qwen2_5vl-7b-RL

Only that local folder is read (``local_files_only``); nothing is downloaded at run time. It must
hold ``config.json``, the weights (``*.safetensors``), the tokenizer and
``preprocessor_config.json``; if a folder lacks the last, copy it (and the chat template) from
``Qwen/Qwen2.5-VL-7B-Instruct``. Memory: the 7B weights take about 16 GB in bfloat16 on a GPU,
plus 1-2 GB of activations for a 512 x 512 image and 512 new tokens, so a 24 GB card is
comfortable. On CPU the model runs in float32 (about 32 GB of RAM and minutes per step).

A LoRA adapter fine-tuned from the checkpoint (``ibisagent train-sft`` / ``train-grpo``) is
merged in at load time with ``adapter=DIR`` (``--policy-option adapter=DIR``; needs peft).

Generation follows the reference: greedy decoding (``do_sample=False``), at most 512 new tokens,
special tokens skipped; other settings (e.g. repetition penalty) come from the checkpoint's own
``generation_config.json``. The image is the green overlay (`ibisagent.imaging.model_view`) capped
at ``max_pixels`` (262144, as in training), and the processor is given the same cap.

torch and transformers are imported only when this policy is built.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional, Union

from ..imaging import MODEL_MAX_PIXELS
from .base import Observation, Policy
from .prompts import load_templates

#: Qwen2.5-VL's own lower bound on image size (4 patches of 28 x 28).
QWEN_MIN_PIXELS = 56 * 56
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
_DTYPES = ("bfloat16", "float16", "float32")
# Image processor settings: older transformers save them alone, transformers 5 inside the
# processor's file.
_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def check_checkpoint(folder: Union[str, Path]) -> Path:
    """Return ``folder`` as a Path if it looks like a Qwen2.5-VL checkpoint, else raise
    FileNotFoundError or ValueError saying what is missing."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"The checkpoint folder {path} does not exist; download manglu3935/IBIS (qwen2_5vl-7b-RL) and pass its path."
        )
    config = path / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"The checkpoint folder {path} has no config.json; is it the model folder itself?")
    if not any(any(path.glob(pattern)) for pattern in _WEIGHT_PATTERNS):
        raise FileNotFoundError(f"The checkpoint folder {path} has no weights (*.safetensors or pytorch_model*.bin).")
    if not any((path / name).is_file() for name in _PROCESSOR_FILES):
        raise FileNotFoundError(
            f"The checkpoint folder {path} has no preprocessor_config.json; copy it from Qwen/Qwen2.5-VL-7B-Instruct."
        )
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except ValueError:
        raise ValueError(f"{config} is not valid JSON.") from None
    if model_type != "qwen2_5_vl":
        raise ValueError(f"{path} holds a {model_type!r} model; the qwen policy needs a Qwen2.5-VL ('qwen2_5_vl') one.")
    return path


def merge_lora_adapter(model, adapter_dir: str):
    """``model`` with the LoRA adapter saved in ``adapter_dir`` merged into its weights (PEFT)."""
    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter_dir} holds no LoRA adapter (adapter_config.json is missing).")
    try:
        from peft import PeftModel
    except ImportError:
        raise ImportError("Loading a LoRA adapter needs peft: pip install 'ibisagent[train]'") from None
    return PeftModel.from_pretrained(model, adapter_dir, is_trainable=False).merge_and_unload()


class QwenPolicy(Policy):
    name = "qwen"

    def __init__(
        self,
        checkpoint: Union[str, Path],
        device: str = "auto",
        max_new_tokens: int = 512,
        max_pixels: int = MODEL_MAX_PIXELS,
        min_pixels: int = QWEN_MIN_PIXELS,
        prompts_dir: Optional[str] = None,
        dtype: Optional[str] = None,
        adapter: Optional[str] = None,
    ) -> None:
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1; got {max_new_tokens}.")
        if not QWEN_MIN_PIXELS <= min_pixels <= max_pixels:
            raise ValueError(f"Need {QWEN_MIN_PIXELS} <= min_pixels <= max_pixels; got {min_pixels} and {max_pixels}.")
        if dtype is not None and dtype not in _DTYPES:
            raise ValueError(f"Unknown dtype {dtype!r}; choose one of: {', '.join(_DTYPES)}.")
        folder = check_checkpoint(checkpoint)
        self.templates = load_templates(prompts_dir)

        import torch
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        self._torch = torch
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        dtype = dtype or ("bfloat16" if self.device.startswith("cuda") else "float32")
        self.max_new_tokens = int(max_new_tokens)
        self.max_pixels = int(max_pixels)
        self.processor = AutoProcessor.from_pretrained(
            str(folder),
            size={"shortest_edge": int(min_pixels), "longest_edge": self.max_pixels},
            local_files_only=True,
        )
        if not self.processor.chat_template:
            raise FileNotFoundError(
                f"The checkpoint folder {folder} has no chat template; copy chat_template.json from Qwen/Qwen2.5-VL-7B-Instruct."
            )
        self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            str(folder), dtype=getattr(torch, dtype), device_map={"": self.device}, local_files_only=True
        )
        if adapter:  # a LoRA adapter fine-tuned from this checkpoint (ibisagent train-sft/train-grpo)
            self.model = merge_lora_adapter(self.model, str(Path(adapter).expanduser()))
        self.model = self.model.eval()
        #: The tokens of the last turn's input as text (chat template applied, image tokens
        #: expanded), for logs and checks.
        self.last_prompt = ""
        #: Seconds and token counts of the last turn, for logs and benchmarks.
        self.last_timings: dict = {}
        self.description = f"Qwen2.5-VL checkpoint {folder}" + (f" + LoRA {adapter}" if adapter else "") + f" on {self.device} ({dtype})"

    def respond(self, observation: Observation) -> str:
        if self.model is None:
            raise RuntimeError("This qwen policy was closed; build a new one to get proposals.")
        torch = self._torch
        started = time.perf_counter()
        turn = self.templates.turn(observation, self.max_pixels)
        prompt = self.processor.apply_chat_template(
            turn.messages({"type": "image"}), tokenize=False, add_generation_prompt=True
        )
        inputs = self.processor(text=[prompt], images=[turn.image], return_tensors="pt").to(self.device)
        first_token = _FirstTokenClock()
        prepared = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                max_new_tokens=self.max_new_tokens,
                stopping_criteria=[first_token],
            )
        finished = time.perf_counter()
        new_tokens = output[0, inputs["input_ids"].shape[1]:]
        text = self.processor.batch_decode([new_tokens], skip_special_tokens=True, clean_up_tokenization_spaces=False)[0]
        self.last_prompt = self.processor.tokenizer.decode(inputs["input_ids"][0], skip_special_tokens=False)
        self.last_timings = {
            "prepare_s": prepared - started,
            "first_token_s": None if first_token.at is None else first_token.at - prepared,
            "generate_s": finished - prepared,
            "prompt_tokens": int(inputs["input_ids"].shape[1]),
            "new_tokens": int(new_tokens.shape[0]),
        }
        return text

    def close(self) -> None:
        """Drop the model so its memory can be freed; safe to call twice."""
        if getattr(self, "model", None) is not None:
            self.model = None
            if self._torch.cuda.is_available():
                self._torch.cuda.empty_cache()


class _FirstTokenClock:
    """A stopping criterion that never stops: generate calls it after each new token, so its
    first call marks the time to first token."""

    def __init__(self) -> None:
        self.at: Optional[float] = None

    def __call__(self, input_ids, scores, **kwargs):
        if self.at is None:
            self.at = time.perf_counter()
        return input_ids.new_zeros((input_ids.shape[0],), dtype=bool)


#: The registry builds this policy by calling the class with the user's options.
build = QwenPolicy
