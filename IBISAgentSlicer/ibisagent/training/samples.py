"""Trajectory records -> training samples: one per applied step, plus a "Terminate" sample on the
mask a finished episode kept when that mask is the target.

Each sample is one model turn exactly as this product asks it (the prompt templates of
`ibisagent.policies.prompts`, Markov on request + overlay) with the answer the model should
have given:

- a proposal the person accepted: the model's own reasoning and action, rewritten in the
  canonical grammar;
- a step the person edited (moved, flipped, deleted the proposal, added clicks) or made alone:
  the person's click is the expert's click. Its action is the click's pixel centre, normalised
  to the image; its reasoning is templated from the image and the mask (`reasoning`). The
  grammar allows one click per step, so the step's ``target`` click is the answer and any other
  clicks of that step only enter the history of later samples;
- the terminal sample: the Terminate proposal the person finished on, or templated text.

The history (clicks since the tool last started from a mask, grouped by step, and that mask) is
what the RL reward replays through the segmentation tool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import numpy as np

from ..actions import NEGATIVE, POSITIVE, TERMINATE, Action, format_response, parse_response
from ..clicks import Click
from ..metrics import iou
from ..policies.base import Observation
from ..policies.prompts import PromptTemplates, Turn
from . import reasoning
from .records import EpisodeRecord, find_records, read_record


@dataclass
class TrainingSample:
    """One model turn and its answer. ``step``: 1-based number of the step being proposed (the
    reward's ``current_step``). ``mask``: the mask shown. ``start_mask`` + ``history``: the
    tool's click chain before this step (clicks grouped by step). ``after``: the mask the
    answer led to (the final mask for a terminal sample)."""

    record_id: str
    source: str
    step: int
    request: str
    image: np.ndarray
    mask: np.ndarray
    truth: np.ndarray
    start_mask: np.ndarray
    history: List[List[Click]]
    action: Action
    response: str
    after: np.ndarray
    decision: str
    max_pixels: Optional[int]

    @property
    def pre_iou(self) -> float:
        return iou(self.mask, self.truth)

    @property
    def history_clicks(self) -> List[Click]:
        return [click for group in self.history for click in group]

    def turn(self, templates: PromptTemplates) -> Turn:
        """The prompt this product sends for this observation (its image: the inference overlay)."""
        from ..imaging import MODEL_MAX_PIXELS

        observation = Observation(self.image, self.mask, self.request, self.step - 1, tuple(self.history_clicks))
        return templates.turn(observation, self.max_pixels or MODEL_MAX_PIXELS)


def click_action(click: Click, width: int, height: int) -> Action:
    """The action for a pixel click: its pixel centre normalised to the image (four decimals),
    which `Action.to_pixel` maps back to the same pixel."""
    kind = POSITIVE if click.positive else NEGATIVE
    return Action(kind, round((click.x + 0.5) / width, 4), round((click.y + 0.5) / height, 4))


def load_records(root: str) -> Tuple[List[EpisodeRecord], List[str]]:
    """(finished records under ``root``, one line per record that was left out and why)."""
    kept, problems = [], []
    for folder in find_records(root):
        try:
            record = read_record(folder)
        except (ValueError, FileNotFoundError) as error:
            problems.append(f"{folder}: {error}")
            continue
        if not record.finished:
            problems.append(f"{folder}: never finished (no final mask to measure against); left out")
            continue
        kept.append(record)
    return kept, problems


def samples_of(record: EpisodeRecord) -> Iterator[TrainingSample]:
    """The training samples of one finished record, in step order."""
    meta = record.meta
    image, truth, final = record.image(), record.truth(), record.final_mask()
    request = str(meta.get("request") or "")
    max_pixels = meta.get("model_max_pixels")
    start = record.initial_mask()
    history: List[List[Click]] = []
    entries = record.steps
    for entry in entries:
        masks = record.step_masks(entry["index"])
        before = masks["mask_before"]
        if entry.get("chain_start"):
            start, history = before, []
        clicks = [Click.from_dict(c) for c in entry["clicks"]]
        action, response = _answer(entry, clicks, image, before, truth, request)
        yield TrainingSample(record.id, meta["source"], entry["index"], request, image, before, truth, start,
                             list(history), action, response, masks["mask_after"], entry["decision"], max_pixels)
        history.append(clicks)
    if meta.get("done"):
        action = Action(TERMINATE)
        proposal = meta.get("final_proposal") or {}
        if proposal.get("reasoning") and proposal.get("action") in ("Terminate", "Termination"):
            text, answer = proposal["reasoning"], proposal.get("answer") or reasoning.describe_done(final, truth)[1]
        else:
            text, answer = reasoning.describe_done(final, truth)
        yield TrainingSample(record.id, meta["source"], len(entries) + 1, request, image, final, truth, start,
                             list(history), action, format_response(text, action, answer), final, "terminal",
                             max_pixels)


def _answer(entry, clicks: List[Click], image: np.ndarray, before: np.ndarray, truth: np.ndarray,
            request: str) -> Tuple[Action, str]:
    """The target action and response text of one recorded step (see the module docstring)."""
    rows, cols = before.shape
    proposal = entry.get("proposal") or {}
    if entry["decision"] == "accepted" and proposal.get("action") and proposal.get("reasoning"):
        action = parse_response(proposal.get("raw_text") or "").action or click_action(clicks[0], cols, rows)
        return action, format_response(proposal["reasoning"], action)
    target = clicks[int(entry.get("target", 0))]
    action = click_action(target, cols, rows)
    text = reasoning.describe_click(image, before, truth, target.x, target.y, target.positive, request)
    return action, format_response(text, action)


def iter_samples(root: str) -> Tuple[List[TrainingSample], List[str]]:
    """Every sample of every finished record under ``root``, and the records left out."""
    records, problems = load_records(root)
    samples = [sample for record in records for sample in samples_of(record)]
    return samples, problems
