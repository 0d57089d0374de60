"""The exported training data as TRL datasets, so TRL trains on exactly what LLaMA-Factory and
verl would (one export, every stack).

- `sft_dataset`: a LLaMA-Factory export folder -> prompt/completion rows with their image
  (TRL's conversational prompt-completion form; the loss covers the completion only, as
  LLaMA-Factory's default does);
- `grpo_dataset`: a verl parquet -> prompt rows with their image and ``extra_info`` (TRL hands
  every column to the reward function).

Message content stays text; TRL puts the image before the first user text, which is where the
``<image>`` placeholder of both exports stands.
"""

from __future__ import annotations

import io
import json
import os
from typing import Dict, List

from .export_common import IMAGE_TOKEN


def _text(message: Dict[str, str]) -> Dict[str, str]:
    content = str(message["content"])
    if message["role"] == "user":
        if IMAGE_TOKEN not in content:
            raise ValueError("A user message has no <image> placeholder; was it written by ibisagent export-training?")
        content = content.replace(IMAGE_TOKEN, "", 1)
    return {"role": str(message["role"]), "content": content}


def sft_dataset(folder: str, dataset: str = ""):
    """The SFT rows of a LLaMA-Factory export (``dataset``: its name in dataset_info.json; the
    only entry when empty)."""
    import datasets
    from PIL import Image

    info_path = os.path.join(folder, "dataset_info.json")
    if not os.path.isfile(info_path):
        raise FileNotFoundError(f"{folder} has no dataset_info.json; export it with --format llamafactory.")
    with open(info_path, encoding="utf-8") as handle:
        info = json.load(handle)
    if not dataset:
        if len(info) != 1:
            raise ValueError(f"{info_path} lists {', '.join(info)}; choose one with --dataset.")
        dataset = next(iter(info))
    if dataset not in info:
        raise ValueError(f"{info_path} has no dataset {dataset!r}; it lists {', '.join(info)}.")
    with open(os.path.join(folder, info[dataset]["file_name"]), encoding="utf-8") as handle:
        rows = json.load(handle)
    prompts: List[list] = []
    completions: List[list] = []
    images: List[list] = []
    for row in rows:
        messages = [_text(m) for m in row["messages"]]
        if messages[-1]["role"] != "assistant":
            raise ValueError("An SFT row does not end with the assistant's answer.")
        prompts.append(messages[:-1])
        completions.append(messages[-1:])
        pictures = []
        for relative in row["images"]:
            with Image.open(os.path.join(folder, relative)) as picture:
                pictures.append(picture.convert("RGB"))
        images.append(pictures)
    return datasets.Dataset.from_dict({"prompt": prompts, "completion": completions, "images": images})


def grpo_dataset(parquet_path: str):
    """The RL rows of a verl export: ``prompt``, ``images`` and ``extra_info``."""
    import datasets
    import pyarrow.parquet as pq
    from PIL import Image

    if not os.path.isfile(parquet_path):
        raise FileNotFoundError(f"The RL data {parquet_path} does not exist; export it with --format verl.")
    rows = pq.read_table(parquet_path).to_pylist()
    prompts, images, extras = [], [], []
    for row in rows:
        prompts.append([_text(m) for m in row["prompt"]])
        images.append([Image.open(io.BytesIO(part["bytes"])).convert("RGB") for part in row["images"]])
        extras.append(row["extra_info"])
    return datasets.Dataset.from_dict({"prompt": prompts, "images": images, "extra_info": extras})
