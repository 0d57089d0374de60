"""Scoring one model response against one RL row: the five rewards with this product's
segmentation tool run in this process (the reference posted every click to an HTTP segmentation
server it did not ship).

A row's ``extra_info`` (written by `ibisagent.training.export_verl`) names the image
(``original_image_name``), the reference mask (``gt_mask_name``, grey > 127 is target) and the
mask the click chain started from (``start_mask_name``, empty for none), and holds the earlier
clicks (``clicklist`` [[x, y], ...] in pixels, ``labels`` 1/0, ``click_groups``: clicks per
step), ``pre_iou``, ``current_step`` and ``optimal_step``. Rows without ``click_groups`` (the
reference's own data) replay all clicks in one call, as its server did.

Bad rows (missing files, sizes that disagree) raise a one-line error rather than scoring 0, so
a broken dataset stops training instead of silently teaching nothing.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional

import numpy as np
from PIL import Image

from ..actions import POSITIVE, Action
from ..clicks import AGENT, Click
from ..engine import EngineSpec
from ..segmenters import DEFAULT_SEGMENTER
from ..segmenters.base import Segmenter
from .replay import ClickReplayer
from .rewards import OPTIMAL_STEP, RewardTerms, score_response

_FILE_CACHE = 32


class RewardScorer:
    """Scores responses to RL rows; keeps one segmentation tool, its embeddings and replays."""

    def __init__(self, segmenter: Optional[Segmenter] = None, segmenter_name: str = DEFAULT_SEGMENTER,
                 **tool_options: Any) -> None:
        self.segmenter = segmenter if segmenter is not None else EngineSpec(segmenter_name, tool_options).tool()
        self.replayer = ClickReplayer(self.segmenter)
        self._files: "OrderedDict[tuple, np.ndarray]" = OrderedDict()

    def score(self, solution_str: str, extra_info: Dict[str, Any]) -> RewardTerms:
        info = _plain(extra_info)
        image_path = _required(info, "original_image_name")
        image = self._read(image_path, "image")
        truth = self._read(_required(info, "gt_mask_name"), "mask")
        shape = image.shape[:2]
        if truth.shape != shape:
            raise ValueError(f"The reference mask {info['gt_mask_name']} is {truth.shape[::-1]}, the image "
                             f"{image_path} {shape[::-1]} (width x height).")
        size = info.get("image_size")
        if size is not None and [int(v) for v in size] != [shape[1], shape[0]]:
            raise ValueError(f"extra_info.image_size {list(size)} does not match the image {image_path} "
                             f"({shape[1]} x {shape[0]}).")
        start_path = info.get("start_mask_name") or ""
        start = self._read(start_path, "mask") if start_path else np.zeros(shape, bool)
        groups = _groups(info)
        self.replayer.use_image(image_path, image)
        current, _ = self.replayer.current(start, groups)

        def mask_after(action: Action) -> np.ndarray:
            x, y, _ = action.to_pixel(shape[1], shape[0])
            return self.replayer.after(start, groups, Click(x, y, action.kind == POSITIVE, AGENT))

        step = info.get("current_step")
        return score_response(solution_str, current, truth, mask_after, float(info.get("pre_iou") or 0.0),
                              None if step is None else int(step), int(info.get("optimal_step") or OPTIMAL_STEP))

    def _read(self, path: str, kind: str) -> np.ndarray:
        key = (path, kind)
        if key in self._files:
            self._files.move_to_end(key)
            return self._files[key]
        if not os.path.isfile(path):
            raise FileNotFoundError(f"The RL row names the {kind} {path}, which does not exist.")
        with Image.open(path) as picture:
            array = np.asarray(picture.convert("RGB")) if kind == "image" else np.asarray(picture.convert("L")) > 127
        self._files[key] = array
        while len(self._files) > _FILE_CACHE:
            self._files.popitem(last=False)
        return array


def _plain(value: Any) -> Any:
    """Lists and dicts all the way down (parquet readers hand back numpy arrays)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _required(info: Dict[str, Any], key: str) -> str:
    value = info.get(key)
    if not value:
        raise ValueError(f"The RL row's extra_info has no {key}.")
    return str(value)


def _groups(info: Dict[str, Any]) -> List[List[Click]]:
    points = info.get("clicklist") or []
    labels = info.get("labels") or []
    if len(points) != len(labels):
        raise ValueError(f"extra_info has {len(points)} clicks but {len(labels)} labels.")
    clicks = [Click(int(round(p[0])), int(round(p[1])), int(label) == 1, AGENT) for p, label in zip(points, labels)]
    sizes = info.get("click_groups")
    if sizes is None:
        return [clicks] if clicks else []
    if sum(int(s) for s in sizes) != len(clicks) or any(int(s) < 1 for s in sizes):
        raise ValueError(f"extra_info.click_groups {sizes} does not split its {len(clicks)} clicks.")
    groups, position = [], 0
    for count in sizes:
        groups.append(clicks[position:position + int(count)])
        position += int(count)
    return groups
