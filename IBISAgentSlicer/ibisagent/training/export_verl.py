"""Records -> verl GRPO parquet rows (the reference's RL stage, unchanged), with every field its
reward reads filled in.

One row per sample (one step replaying the earlier clicks, as the reference trained), in
``<out>/<split>.parquet``:

- ``data_source`` "med-seg"; ``ability`` "reasoning";
- ``prompt``: the chat messages (a system message unless the system template is empty, then the
  user message ``<image>`` + the prompt this product sends);
- ``images``: ``[{"bytes": PNG}]``, the observation picture;
- ``reward_model``: ``{"style": "rule", "ground_truth": <the expert's action line>}``; a person's
  correction is the expert's action of its step;
- ``extra_info``: the reference's fields (``split``, ``index``, ``answer``, ``question``,
  ``dataset``, ``original_image_name``, ``gt_mask_name``, ``clicklist`` [[x, y]] in pixels,
  ``labels`` 1/0, ``current_gt_mask`` (the mask after the expert's action: COCO RLE counts,
  zlib-compressed, base64, as the reference wrote), ``image_size`` [W, H]) and those its reward
  reads but its converter never wrote (``pre_iou``, ``current_step``, ``optimal_step``), plus
  ``click_groups`` (clicks per earlier step), ``start_mask_name`` (the mask the click chain
  started from; "" for none), ``record_id`` and ``source``.

The files the reward opens (image, reference mask, start masks) are written as PNG under
``<out>/files/`` and named by absolute path: keep the folder where the reward workers can read
it (a shared file system for multi-node runs).
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Callable, Dict, List, Optional

import numpy as np
from PIL import Image

from ..policies.prompts import load_templates
from ..safe_io import OwnedFolder
from .export_common import add_picture, mask_picture, messages, output_folder, png_bytes, sample_picture
from .rewards import OPTIMAL_STEP
from .samples import TrainingSample, iter_samples
from .training_images import DEFAULT_OVERLAY

DATA_SOURCE = "med-seg"
FILES_DIR = "files"


def _schema():
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    extra = pa.struct([
        ("split", pa.string()), ("index", pa.int64()), ("answer", pa.string()), ("question", pa.string()),
        ("dataset", pa.string()), ("original_image_name", pa.string()), ("gt_mask_name", pa.string()),
        ("start_mask_name", pa.string()), ("clicklist", pa.list_(pa.list_(pa.int64()))),
        ("labels", pa.list_(pa.int64())), ("click_groups", pa.list_(pa.int64())),
        ("current_gt_mask", pa.string()), ("image_size", pa.list_(pa.int64())), ("pre_iou", pa.float64()),
        ("current_step", pa.int64()), ("optimal_step", pa.int64()), ("record_id", pa.string()),
        ("source", pa.string()),
    ])
    return pa.schema([
        ("data_source", pa.string()), ("prompt", pa.list_(message)),
        ("images", pa.list_(pa.struct([("bytes", pa.binary())]))), ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        ("extra_info", extra),
    ])


def rle_counts(mask: np.ndarray) -> str:
    """The reference's ``current_gt_mask`` encoding: COCO RLE counts -> zlib -> base64."""
    try:
        from pycocotools import mask as coco_mask
    except ImportError:
        raise ImportError("The verl export needs pycocotools: pip install 'ibisagent[train]'") from None
    encoded = coco_mask.encode(np.asfortranarray(np.asarray(mask, bool).astype(np.uint8)))
    return base64.b64encode(zlib.compress(encoded["counts"])).decode("ascii")


def export_verl(records_dir: str, out_dir: str, overlay: str = DEFAULT_OVERLAY, prompts_dir: Optional[str] = None,
                dataset: str = "ibisagent", split: str = "train", optimal_step: int = OPTIMAL_STEP,
                overwrite: bool = False, log: Callable[[str], None] = print) -> Dict[str, object]:
    """Export every finished record under ``records_dir``; returns a summary."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not split or any(ch in split for ch in "/\\ "):
        raise ValueError(f"--split {split!r}: give a plain name such as train or test.")
    out = output_folder(out_dir, records_dir, f"verl {split}", overwrite)
    parquet_name = f"{split}.parquet"
    out.declare([parquet_name])
    templates = load_templates(prompts_dir)
    samples, problems = iter_samples(records_dir)
    for line in problems:
        log(f"left out {line}")
    if not samples:
        raise ValueError(f"{records_dir} holds no finished trajectory record to export.")
    rows: List[dict] = []
    written: Dict[str, str] = {}
    for index, sample in enumerate(samples):
        files = _write_files(out, sample, written)
        prompt, question = messages(sample, templates)
        answer = sample.action.to_text()
        history = sample.history_clicks
        rows.append({
            "data_source": DATA_SOURCE,
            "prompt": prompt,
            "images": [{"bytes": png_bytes(sample_picture(sample, overlay))}],
            "ability": "reasoning",
            "reward_model": {"style": "rule", "ground_truth": answer},
            "extra_info": {
                "split": split, "index": index, "answer": answer, "question": question, "dataset": dataset,
                "original_image_name": files["image"], "gt_mask_name": files["truth"],
                "start_mask_name": files["start"],
                "clicklist": [[c.x, c.y] for c in history], "labels": [c.label for c in history],
                "click_groups": [len(group) for group in sample.history],
                "current_gt_mask": rle_counts(sample.after),
                "image_size": [int(sample.image.shape[1]), int(sample.image.shape[0])],
                "pre_iou": float(sample.pre_iou), "current_step": int(sample.step),
                "optimal_step": int(optimal_step), "record_id": sample.record_id, "source": sample.source,
            },
        })
    with out.add(parquet_name) as temporary:
        pq.write_table(pa.Table.from_pylist(rows, schema=_schema()), temporary)
    out.commit()
    return {"format": "verl", "samples": len(rows), "records": len({s.record_id for s in samples}),
            "left_out": len(problems), "file": out.path(parquet_name), "overlay": overlay}


def _write_files(out: OwnedFolder, sample: TrainingSample, written: Dict[str, str]) -> Dict[str, str]:
    """Absolute paths of the sample's image, reference mask and start mask PNGs, each staged
    once in the export folder."""
    folder = f"{FILES_DIR}/{sample.record_id}"
    image_path = out.path(f"{folder}/image.png")
    truth_path = out.path(f"{folder}/truth.png")
    if image_path not in written:
        add_picture(out, f"{folder}/image.png", Image.fromarray(sample.image))
        add_picture(out, f"{folder}/truth.png", mask_picture(sample.truth))
        written[image_path] = truth_path
    start_path = ""
    if sample.start_mask.any():
        digest = hashlib.sha1(np.packbits(sample.start_mask).tobytes()).hexdigest()[:16]
        start_path = out.path(f"{folder}/start_{digest}.png")
        if start_path not in written:
            add_picture(out, f"{folder}/start_{digest}.png", mask_picture(sample.start_mask))
            written[start_path] = start_path
    return {"image": image_path, "truth": truth_path, "start": start_path}
