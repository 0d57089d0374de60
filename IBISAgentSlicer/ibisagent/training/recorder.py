"""The opt-in training recorder: writes a trajectory record (see `ibisagent.training.records`) of
every episode it is given, to a local folder the user chose. Nothing is recorded unless a caller
builds a `TrainingRecorder`; nothing is ever sent anywhere.

Two ways in, both usable from Slicer's Python (standard library + numpy only):

- `TrainingRecorder.record(session)`: a `SessionRecording` that *listens* to any
  `ibisagent.session.Session` (an in-process `Episode`, a `RemoteSession`): every step the
  session applies is written, an undo removes the undone step from the record, and
  `SessionRecording.finish()` writes the final mask and the IoU of every step against it. The
  session is used as before; it is not wrapped.
- `TrainingRecorder.start(image, ...)` gives an `EpisodeRecording` to feed by hand
  (`add_step`, `undo_last`, `finish`) when there is no session to listen to.

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
from ..errors import RecordWriteError
from ..metrics import iou
from ..session import APPLIED, UNDONE, Change, Proposal, decision_of
from . import records


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

    def record(self, session: Any, source: str = "console", truth: Optional[np.ndarray] = None,
               name: Optional[str] = None, policy: Optional[str] = None, segmenter: Optional[str] = None,
               model_max_pixels: Optional[int] = None) -> "SessionRecording":
        """Record what ``session`` applies from now on (a listener on it). The image, request and
        starting mask are read from ``session`` (``image``, ``request``, ``mask``); the policy and
        tool names from its ``policy``/``segmenter`` unless given."""
        if policy is None:
            policy = getattr(getattr(session, "policy", None), "name", "") or ""
        if segmenter is None:
            segmenter = getattr(getattr(session, "segmenter", None), "name", "") or ""
        if model_max_pixels is None:
            model_max_pixels = getattr(getattr(session, "policy", None), "max_pixels", None)
        recording = self.start(session.image, getattr(session, "request", ""), session.mask, source, policy,
                               segmenter, truth, name, model_max_pixels)
        return SessionRecording(session, recording)


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
        `ibisagent.session.Proposal` or its ``to_dict()`` form; None for clicks placed with no
        proposal). ``chain_start``: the tool had no earlier clicks (default: only the first
        step). ``decision``: the step's (default: `ibisagent.session.decision_of`). Returns the
        step's entry."""
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
            "decision": decision or decision_of(None if proposal_data is None else Proposal.from_dict(proposal_data),
                                                clicks),
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


class SessionRecording:
    """Records one session by listening to it (see `TrainingRecorder.record`): each applied step
    is written at once, an undo trims the record to the session's steps. ``recording``: the
    `EpisodeRecording` being written; ``session``: the session listened to."""

    def __init__(self, session: Any, recording: EpisodeRecording) -> None:
        self.session = session
        self.recording = recording
        session.add_listener(self)

    @staticmethod
    def of(session: Any) -> Optional["SessionRecording"]:
        """The recording listening to ``session``, or None."""
        return next((listener for listener in session.listeners if isinstance(listener, SessionRecording)), None)

    def __call__(self, change: Change) -> None:
        """Write an applied step; trim the record after an undo. When a step cannot be written
        the session takes it back and `RecordWriteError` is raised: a session never holds a
        step its record lacks."""
        if change.kind == APPLIED:
            step = change.step
            try:
                self.recording.add_step(change.mask_before, step.clicks, self.session.mask, step.proposal,
                                        change.chain_start, step.seconds, step.decision)
            except OSError as error:
                self.session.undo()
                raise RecordWriteError(f"The step could not be recorded for training in {self.recording.folder} "
                                       f"({error}), so it was taken back.") from error
        elif change.kind == UNDONE:
            self.recording.truncate(len(self.session.steps))

    def stop(self) -> None:
        """Stop listening; the record stays as it is."""
        self.session.remove_listener(self)

    def finish(self, done: Optional[bool] = None) -> str:
        """Finalise the record with the session's current mask (recording goes on until `stop`;
        a later step reopens the record until it is finished again). ``done`` (default: the
        session did not stop on its step limit) says the kept mask is the target. A pending
        Terminate proposal is kept as the answer to the final observation."""
        session = self.session
        pending = session.pending
        terminal = pending if pending is not None and pending.action is not None and not pending.action.is_point else None
        if done is None:
            done = session.stop_reason != "step-limit"
        return self.recording.finish(session.mask, done, session.stop_reason, session.answer, terminal)

    def discard(self) -> None:
        """Stop listening and delete the record."""
        self.stop()
        self.recording.discard()


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
