"""Records -> LLaMA-Factory's multimodal SFT data (the reference's cold-start stage, unchanged).

Writes into the output folder:

- ``<dataset>.json``: a list of sharegpt-style rows ``{"messages": [system?, user, assistant],
  "images": ["images/<record>/step_NN.png"]}``; the user content is ``<image>`` followed by the
  prompt this product sends, the assistant content the target response;
- ``dataset_info.json``: the entry that registers it (``formatting: sharegpt``, ``messages`` and
  ``images`` columns, role/content tags);
- ``images/``: the observation pictures (image paths are relative to the folder, which
  LLaMA-Factory resolves against ``dataset_dir``/``media_dir``).

Train with ``dataset_dir: <folder>`` and ``dataset: <dataset>`` in the SFT yaml
(``training/llamafactory/ibisagent_lora_sft.yaml``).
"""

from __future__ import annotations

import json
from typing import Callable, Dict, Optional

from ..policies.prompts import load_templates
from .export_common import add_picture, messages, output_folder, sample_picture
from .samples import iter_samples
from .training_images import DEFAULT_OVERLAY

DEFAULT_DATASET = "ibisagent_sft"
IMAGES_DIR = "images"


def dataset_info_entry(file_name: str) -> Dict[str, object]:
    """The ``dataset_info.json`` entry for a file written here."""
    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                 "assistant_tag": "assistant", "system_tag": "system"},
    }


def export_llamafactory(records_dir: str, out_dir: str, overlay: str = DEFAULT_OVERLAY,
                        prompts_dir: Optional[str] = None, dataset: str = DEFAULT_DATASET, overwrite: bool = False,
                        log: Callable[[str], None] = print) -> Dict[str, object]:
    """Export every finished record under ``records_dir``; returns a summary."""
    if not dataset or any(ch in dataset for ch in "/\\ "):
        raise ValueError(f"--dataset {dataset!r}: give a plain name (letters, digits, _ or -).")
    out = output_folder(out_dir, records_dir, f"llamafactory {dataset}", overwrite)
    data_file = f"{dataset}.json"
    out.declare([data_file, "dataset_info.json"])
    templates = load_templates(prompts_dir)
    samples, problems = iter_samples(records_dir)
    for line in problems:
        log(f"left out {line}")
    if not samples:
        raise ValueError(f"{records_dir} holds no finished trajectory record to export.")
    names = [f"{IMAGES_DIR}/{sample.record_id}/step_{sample.step:02d}.png" for sample in samples]
    out.declare(names)
    rows = []
    for sample, relative in zip(samples, names):
        add_picture(out, relative, sample_picture(sample, overlay))
        prompt, _ = messages(sample, templates)
        rows.append({"messages": prompt + [{"role": "assistant", "content": sample.response}], "images": [relative]})
    out.add_text(data_file, json.dumps(rows, indent=1, ensure_ascii=False))
    out.add_json("dataset_info.json", {dataset: dataset_info_entry(data_file)})
    out.commit()
    records = len({s.record_id for s in samples})
    return {"format": "llamafactory", "samples": len(rows), "records": records, "left_out": len(problems),
            "file": out.path(data_file), "dataset": dataset, "overlay": overlay}
