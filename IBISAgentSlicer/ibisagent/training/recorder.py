"""The opt-in training recorder: writes a trajectory record (see `ibisagent.training.records`) of
every episode it is given, to a local folder the user chose. Nothing is recorded unless a caller
builds a `TrainingRecorder`; nothing is ever sent anywhere.

Two ways in, both usable from Slicer's Python (standard library + numpy only):

- `TrainingRecorder.wrap(session)`: any `ibisagent.session.Session` (an in-process `Episode`, a
  `RemoteSession`, Slicer's worked slice) becomes a session that records each step it applies;
  `undo` removes the undone step from the record; `finish()` writes the final mask and the IoU
  of every step against it. Use the wrapped session exactly like the original.
- `TrainingRecorder.start(image, ...)` gives an `EpisodeRecording` to feed by hand
  (`add_step`, `undo_last`, `finish`) when there is no session object to wrap.

Only applied steps are written (a proposal that was skipped leaves no trace), each as soon as it
is applied, so a crash loses nothing already done; ``finish`` may be called again after more
steps, and rewrites the record.
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..clicks import AGENT, USER_MOVED, Click
from ..metrics import iou
from ..session import ACCEPTED, EDITED, USER_ONLY, run_until_stop
from . import records


class RecordWriteError(RuntimeError):
    """A step could not be written to its record (disk full, folder removed...). The step was
    taken back, so the session and its record still agree."""


class TrainingRecorder:
    """Records episodes into ``folder`` (created if needed; one sub-folder per episode).

    ``recorded_steps`` counts the applied steps this recorder has written and not seen undone
    (what the panel shows next to its "Record for training" toggle);
    `records.count_steps(folder)` counts everything in the folder.
    """

    def __init__(self, folder: str) -> None:
        path = os.path.abspath(os.path.expanduser(str(folder)))
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"The record folder {path} is a file; choose a folder.")
        os.makedirs(path, exist_ok=True)
        self.folder = path
        self._recordings: List[EpisodeRecording] = []

    @property
    def recorded_steps(self) -> int:
        return sum(len(recording.steps) for recording in self._recordings)

    def start(self, image: np.ndarray, request: str = "", initial_mask: Optional[np.ndarray] = None,
              source: str = "console", policy: str = "", segmenter: str = "", truth: Optional[np.ndarray] = None,
              name: Optional[str] = None, model_max_pixels: Optional[int] = None) -> "EpisodeRecording":
        """Begin the record of one episode on ``image`` (RGB uint8 (H, W, 3)).

        ``truth``: a reference mask to measure IoUs on (an expert's mask: cold start, eval);
        without one the mask the person finally keeps is the reference. ``name``: the record
        folder's name (default: time, source and a random suffix); an existing one is refused.
        """
        if source not in records.SOURCES:
            raise ValueError(f"Unknown record source {source!r}; choose one of: {', '.join(records.SOURCES)}.")
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"The image to record must be RGB uint8 (H, W, 3); got {image.dtype} {image.shape}.")
        shape = image.shape[:2]
        initial = np.zeros(shape, bool) if initial_mask is None else _mask(initial_mask, shape, "initial mask")
        expert = None if truth is None else _mask(truth, shape, "reference mask")
        created = datetime.now(timezone.utc)
        record_id = name or f"{created:%Y%m%d-%H%M%S}-{source}-{secrets.token_hex(3)}"
        folder = os.path.join(self.folder, record_id)
        if os.path.exists(folder):
            raise ValueError(f"The record {folder} already exists; choose another name or folder.")
        os.makedirs(os.path.join(folder, records.STEPS_DIR))
        meta = {
            "format": records.FORMAT,
            "version": records.VERSION,
            "id": record_id,
            "source": source,
            "created": created.isoformat(timespec="seconds"),
            "request": request,
            "policy": policy,
            "segmenter": segmenter,
            "image_size": [int(shape[1]), int(shape[0])],
            "model_max_pixels": model_max_pixels,
            "truth": records.TRUTH_FINAL if expert is None else records.TRUTH_EXPERT,
            "finished": False,
            "done": False,
            "stop_reason": None,
            "answer": None,
            "final_proposal": None,
            "steps": [],
        }
        records.write_arrays(os.path.join(folder, records.IMAGE_FILE), image=image, initial_mask=initial)
        recording = EpisodeRecording(folder, meta, expert)
        recording.save()
        self._recordings.append(recording)
        return recording

    def wrap(self, session: Any, source: str = "console", truth: Optional[np.ndarray] = None,
             name: Optional[str] = None, policy: Optional[str] = None, segmenter: Optional[str] = None,
             model_max_pixels: Optional[int] = None) -> "RecordingSession":
        """A session that records what ``session`` applies from now on. The image, request and
        starting mask are read from ``session`` (``image``, ``request``, ``mask``)."""
        if policy is None:
            policy = getattr(getattr(session, "policy", None), "name", "") or ""
        if segmenter is None:
            segmenter = getattr(getattr(session, "segmenter", None), "name", "") or ""
        if model_max_pixels is None:
            model_max_pixels = getattr(getattr(session, "policy", None), "max_pixels", None)
        recording = self.start(session.image, getattr(session, "request", ""), session.mask, source, policy,
                               segmenter, truth, name, model_max_pixels)
        return RecordingSession(session, recording)


class EpisodeRecording:
    """The record of one episode, written step by step (see `TrainingRecorder.start`)."""

    def __init__(self, folder: str, meta: Dict[str, Any], truth: Optional[np.ndarray]) -> None:
        self.folder = folder
        self.meta = meta
        self._truth = truth
        self._shape = (meta["image_size"][1], meta["image_size"][0])

    @property
    def steps(self) -> List[Dict[str, Any]]:
        return self.meta["steps"]

    def save(self) -> None:
        records.write_json(os.path.join(self.folder, records.EPISODE_FILE), self.meta)

    def add_step(self, mask_before: np.ndarray, clicks: Sequence[Click], mask_after: np.ndarray,
                 proposal: Any = None, chain_start: Optional[bool] = None, tool_seconds: Optional[float] = None,
                 decision: Optional[str] = None) -> Dict[str, Any]:
        """Record one applied step: the mask the model saw (``mask_before``), the clicks
        applied (with their origins), the tool's result, and the proposal they answered (an
        `ibisagent.session.Proposal` or its dict form; None for clicks placed with no
        proposal). ``chain_start``: the tool had no earlier clicks (default: only the first
        step). Returns the step's entry."""
        clicks = [c if isinstance(c, Click) else Click.from_dict(c) for c in clicks]
        if not clicks:
            raise ValueError("A recorded step needs at least one applied click.")
        before = _mask(mask_before, self._shape, "mask before the step")
        after = _mask(mask_after, self._shape, "mask after the step")
        proposal_data = _proposal_dict(proposal)
        proposed = _proposed_click(proposal_data)
        edits = [_edit(click, proposed) for click in clicks]
        index = len(self.steps) + 1
        entry = {
            "index": index,
            "decision": decision or _decision(proposal_data, proposed, clicks),
            "chain_start": bool(index == 1 if chain_start is None else chain_start),
            "clicks": [dict(click.to_dict(), edit=edit) for click, edit in zip(clicks, edits)],
            "target": _target(clicks),
            "proposal_deleted": bool(proposed is not None and all(c.origin not in (AGENT, USER_MOVED) for c in clicks)),
            "proposal": proposal_data,
            "mask_pixels": int(after.sum()),
            "tool_seconds": None if tool_seconds is None else round(float(tool_seconds), 6),
            "recorded_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "iou_before": None,
            "iou_after": None,
        }
        records.write_arrays(os.path.join(self.folder, records.step_file(index)), mask_before=before, mask_after=after)
        self.steps.append(entry)
        self.meta["finished"] = False
        self.save()
        return entry

    def undo_last(self) -> bool:
        """Remove the last recorded step (the person undid it); False when there is none."""
        if not self.steps:
            return False
        self.truncate(len(self.steps) - 1)
        return True

    def truncate(self, count: int) -> None:
        """Keep only the first ``count`` steps (the session's steps after an undo)."""
        if count >= len(self.steps):
            return
        for entry in self.steps[count:]:
            path = os.path.join(self.folder, records.step_file(entry["index"]))
            if os.path.exists(path):
                os.remove(path)
        del self.steps[count:]
        self.meta["finished"] = False
        self.save()

    def finish(self, final_mask: np.ndarray, done: bool = True, stop_reason: Optional[str] = None,
               answer: Optional[str] = None, final_proposal: Any = None) -> str:
        """The person keeps ``final_mask``: write it, the IoU of the mask before and after every
        step against the reference (the expert's mask when one was given, else ``final_mask``),
        and whether the kept mask is the target (``done``). Returns the record folder."""
        final = _mask(final_mask, self._shape, "final mask")
        truth = final if self._truth is None else self._truth
        records.write_arrays(os.path.join(self.folder, records.FINAL_FILE), final_mask=final, truth=truth)
        for entry in self.steps:
            masks = records.read_arrays(os.path.join(self.folder, records.step_file(entry["index"])))
            entry["iou_before"] = iou(masks["mask_before"].astype(bool), truth)
            entry["iou_after"] = iou(masks["mask_after"].astype(bool), truth)
        self.meta.update(finished=True, done=bool(done), stop_reason=stop_reason, answer=answer,
                         final_proposal=_proposal_dict(final_proposal))
        self.save()
        return self.folder

    def discard(self) -> None:
        """Delete this record (the person chose not to keep it): the files it wrote, not anything
        else found in its folder; its steps no longer count in `TrainingRecorder.recorded_steps`."""
        records.remove_record(self.folder)
        del self.steps[:]


class RecordingSession:
    """A `Session` that records every step it applies (see `TrainingRecorder.wrap`). All reads
    and calls go to the wrapped session; ``recording`` is the record being written."""

    def __init__(self, session: Any, recording: EpisodeRecording) -> None:
        self._session = session
        self.recording = recording

    @property
    def wrapped(self) -> Any:
        """The session being recorded (to go on without recording, use it instead)."""
        return self._session

    # The Session interface's state, read from (and, for stop_reason, written to) the wrapped one.
    mask = property(lambda self: self._session.mask)
    initial_mask = property(lambda self: self._session.initial_mask)
    clicks = property(lambda self: self._session.clicks)
    steps = property(lambda self: self._session.steps)
    proposals = property(lambda self: self._session.proposals)
    pending = property(lambda self: self._session.pending)
    answer = property(lambda self: self._session.answer)
    max_steps = property(lambda self: self._session.max_steps)
    can_undo = property(lambda self: self._session.can_undo)

    @property
    def stop_reason(self) -> Optional[str]:
        return self._session.stop_reason

    @stop_reason.setter
    def stop_reason(self, value: Optional[str]) -> None:
        self._session.stop_reason = value

    def __getattr__(self, name: str) -> Any:  # image, request, segmenter, policy, ...
        return getattr(self._session, name)

    def propose(self):
        return self._session.propose()

    def apply(self, clicks: Sequence[Click]):
        """Apply ``clicks`` and record the step. When the record cannot be written the step is
        undone and `RecordWriteError` raised: a session never holds a step its record lacks
        (`undo` keeps the two aligned by counting steps)."""
        before = np.array(self._session.mask, dtype=bool)
        chain_start = not self._session.clicks
        step = self._session.apply(clicks)
        try:
            self.recording.add_step(before, step.clicks, self._session.mask, step.proposal, chain_start,
                                    step.seconds, step.decision)
        except OSError as error:
            self._session.undo()
            raise RecordWriteError(f"The step could not be recorded for training in {self.recording.folder} "
                                   f"({error}), so it was taken back; stop recording or record elsewhere.") from error
        return step

    def skip(self) -> None:
        self._session.skip()

    def replace_mask(self, mask: np.ndarray) -> None:
        self._session.replace_mask(mask)

    def undo(self) -> bool:
        undone = self._session.undo()
        self.recording.truncate(len(self._session.steps))
        return undone

    def run(self, max_steps: Optional[int] = None, decide=None, on_step=None):
        run_until_stop(self, max_steps, decide, on_step)
        return self.result()

    def result(self):
        return self._session.result()

    def finish(self, done: Optional[bool] = None) -> str:
        """Finalise the record with the session's current mask. ``done`` (default: the session
        did not stop on its step limit) says the kept mask is the target. A pending Terminate
        proposal is kept as the answer to the final observation."""
        pending = self._session.pending
        terminal = pending if pending is not None and pending.action is not None and not pending.action.is_point else None
        if done is None:
            done = self._session.stop_reason != "step-limit"
        return self.recording.finish(self._session.mask, done, self._session.stop_reason, self._session.answer,
                                     terminal)

    def close(self) -> None:
        self._session.close()


def _mask(mask: np.ndarray, shape, what: str) -> np.ndarray:
    array = np.asarray(mask)
    if array.shape != tuple(shape):
        raise ValueError(f"The {what} has shape {array.shape}; the recorded image has {tuple(shape)}.")
    return array.astype(bool)


def _proposal_dict(proposal: Any) -> Optional[Dict[str, Any]]:
    if proposal is None:
        return None
    data = proposal.to_dict() if hasattr(proposal, "to_dict") else dict(proposal)
    keys = ("step", "policy", "raw_text", "reasoning", "action", "answer", "error", "click", "clamped", "seconds")
    return {key: data.get(key) for key in keys}


def _proposed_click(proposal: Optional[Dict[str, Any]]) -> Optional[Click]:
    if not proposal or not proposal.get("click"):
        return None
    return Click.from_dict(dict(proposal["click"], origin=AGENT))


def _decision(proposal: Optional[Dict[str, Any]], proposed: Optional[Click], clicks: List[Click]) -> str:
    if proposal is None:
        return USER_ONLY
    return ACCEPTED if proposed is not None and clicks == [proposed] else EDITED


def _edit(click: Click, proposed: Optional[Click]) -> str:
    """accepted / moved / flipped / moved-flipped / added, against the proposed click."""
    if click.origin == AGENT:
        return records.EDIT_ACCEPTED
    if click.origin == USER_MOVED and proposed is not None:
        moved = (click.x, click.y) != (proposed.x, proposed.y)
        flipped = click.positive != proposed.positive
        if moved and flipped:
            return records.EDIT_MOVED_FLIPPED
        return records.EDIT_FLIPPED if flipped else records.EDIT_MOVED
    return records.EDIT_ADDED


def _target(clicks: List[Click]) -> int:
    """The click that is the step's answer: the proposal's own click as accepted, moved or
    flipped when it was kept, else the first click the person placed."""
    for position, click in enumerate(clicks):
        if click.origin in (AGENT, USER_MOVED):
            return position
    return 0
