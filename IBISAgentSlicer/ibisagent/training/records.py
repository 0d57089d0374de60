"""The trajectory record: what one recorded episode leaves on disk, and how to read it back.

One folder per episode, inside the record folder the user chose::

    <record folder>/<record id>/
        episode.json         the episode and every applied step (fields below)
        image.npz            image: RGB uint8 (H, W, 3), exactly what the tool and the model got
                             initial_mask: bool (H, W), the mask the episode started from
        steps/step_NN.npz    mask_before, mask_after: bool (H, W) around applied step NN
        final.npz            final_mask: the mask kept; truth: the mask the IoUs are measured on

``episode.json`` holds ``format`` ("ibisagent-trajectory"), ``version``, ``id``, ``source``
(panel, console, continue, eval, server, cold-start), ``created`` (UTC), ``request``,
``policy``/``segmenter`` (names as given), ``image_size`` [W, H], ``model_max_pixels`` (the cap
on the picture the model was shown), ``truth`` ("final": the mask the person kept; "expert": a
reference mask given with the images), ``finished``, ``done`` (the kept mask is the target, so
"Terminate" is the right answer on it), ``stop_reason``, ``answer``, ``final_proposal`` and
``steps``. Each step has ``index`` (from 1), ``decision`` (accepted, edited, user),
``chain_start`` (the tool had no earlier clicks: first step, or first after a hand edit),
``clicks`` (pixels, ``positive`` = label 1, ``origin`` and ``edit``: accepted, moved, flipped,
moved-flipped, added), ``target`` (index of the click that is the step's answer: the model
grammar has one click per step), ``proposal_deleted``, ``proposal`` (the raw model text, parsed
action, timings) or null, ``mask_pixels``, ``tool_seconds``, ``recorded_at`` and, once
finished, ``iou_before``/``iou_after`` against ``final.npz:truth``.

The masks before each step are the observation: the model was shown ``image`` with
``mask_before`` drawn on it (`ibisagent.training.training_images` renders it exactly). Only
steps that were applied are in a record; undone steps are removed with their files.

Every file is written atomically through `ibisagent.safe_io` (a crash leaves the previous
version, never half a file); `remove_record` removes only the files a record is made of.

Standard library + numpy only, so Slicer's Python can write and count records.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List

import numpy as np

from .. import safe_io

FORMAT = "ibisagent-trajectory"
VERSION = 1
EPISODE_FILE = "episode.json"
IMAGE_FILE = "image.npz"
FINAL_FILE = "final.npz"
STEPS_DIR = "steps"

SOURCES = ("panel", "console", "continue", "eval", "server", "cold-start")
TRUTH_FINAL = "final"
TRUTH_EXPERT = "expert"

# How a person treated each applied click, relative to the proposal it answered.
EDIT_ACCEPTED = "accepted"
EDIT_MOVED = "moved"
EDIT_FLIPPED = "flipped"
EDIT_MOVED_FLIPPED = "moved-flipped"
EDIT_ADDED = "added"


def step_file(index: int) -> str:
    """Path of step ``index``'s arrays, relative to the record folder."""
    return os.path.join(STEPS_DIR, f"step_{index:02d}.npz")


def write_json(path: str, document: Dict[str, Any]) -> None:
    """Write JSON atomically (a crash leaves the previous version, never half a file)."""
    _require_folder(path)
    safe_io.write_text(path, json.dumps(document, indent=1) + "\n")


def write_arrays(path: str, **arrays: np.ndarray) -> None:
    """Compressed, lossless .npz, written atomically."""
    _require_folder(path)
    with safe_io.atomic_path(path) as temporary:
        np.savez_compressed(temporary, **arrays)


def _require_folder(path: str) -> None:
    """A record's folders are made when it starts; one that is gone was removed by someone, and
    is not silently made again."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"The record folder {folder} is gone (removed while recording).")


def remove_record(folder: str) -> None:
    """Delete a record this product wrote: its own files (episode, image, steps, final), then its
    folders if that leaves them empty. Anything else found there stays."""
    steps = os.path.join(folder, STEPS_DIR)
    names = [os.path.join(folder, name) for name in (EPISODE_FILE, IMAGE_FILE, FINAL_FILE)]
    if os.path.isdir(steps):
        names += [os.path.join(steps, name) for name in os.listdir(steps) if re.fullmatch(r"step_\d+\.npz", name)]
    for path in names:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    for empty in (steps, folder):
        with contextlib.suppress(OSError):  # not empty: someone else's files are kept
            os.rmdir(empty)


def read_arrays(path: str) -> Dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"The record file {path} is missing.")
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


@dataclass
class EpisodeRecord:
    """One record read back: ``meta`` is episode.json; arrays are read when asked for."""

    folder: str
    meta: Dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.meta["id"])

    @property
    def steps(self) -> List[Dict[str, Any]]:
        return list(self.meta["steps"])

    @property
    def finished(self) -> bool:
        return bool(self.meta.get("finished"))

    def image(self) -> np.ndarray:
        return read_arrays(os.path.join(self.folder, IMAGE_FILE))["image"]

    def initial_mask(self) -> np.ndarray:
        return read_arrays(os.path.join(self.folder, IMAGE_FILE))["initial_mask"].astype(bool)

    def step_masks(self, index: int) -> Dict[str, np.ndarray]:
        """``mask_before`` and ``mask_after`` of step ``index`` (from 1)."""
        arrays = read_arrays(os.path.join(self.folder, step_file(index)))
        return {name: value.astype(bool) for name, value in arrays.items()}

    def final_mask(self) -> np.ndarray:
        return self._final()["final_mask"]

    def truth(self) -> np.ndarray:
        return self._final()["truth"]

    def _final(self) -> Dict[str, np.ndarray]:
        if not self.finished:
            raise ValueError(f"The record {self.folder} was never finished; it has no final mask.")
        return {k: v.astype(bool) for k, v in read_arrays(os.path.join(self.folder, FINAL_FILE)).items()}


def read_record(folder: str) -> EpisodeRecord:
    """Read one record folder; ValueError or FileNotFoundError say what is wrong with it."""
    path = os.path.join(folder, EPISODE_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder} is not a trajectory record (it has no {EPISODE_FILE}).")
    try:
        with open(path, encoding="utf-8") as handle:
            meta = json.load(handle)
    except ValueError:
        raise ValueError(f"{path} is not valid JSON.") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an IBISAgent trajectory record (format is not {FORMAT!r}).")
    if meta.get("version") != VERSION:
        raise ValueError(f"{path} has record version {meta.get('version')!r}; this ibisagent reads version {VERSION}.")
    return EpisodeRecord(folder, meta)


def find_records(root: str) -> List[str]:
    """Record folders under ``root`` (``root`` itself, or any folder below it), sorted."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"The record folder {root} does not exist.")
    found = []
    for here, folders, files in os.walk(root):
        folders.sort()
        if EPISODE_FILE in files:
            found.append(here)
            folders[:] = []  # a record's own sub-folders hold its arrays, not other records
    return sorted(found)


def count_steps(root: str, finished_only: bool = False) -> int:
    """How many applied steps the records under ``root`` hold (what the panel shows)."""
    if not os.path.isdir(root):
        return 0
    total = 0
    for folder in find_records(root):
        try:
            record = read_record(folder)
        except (ValueError, FileNotFoundError):
            continue
        if finished_only and not record.finished:
            continue
        total += len(record.meta.get("steps", []))
    return total
