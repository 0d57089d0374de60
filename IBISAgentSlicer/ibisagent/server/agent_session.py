"""One client's episode on the server, and the mask revisions the client follows.

An `AgentSession` holds an `Episode`, the one authority for the session's state (mask, clicks,
the tool's prior, steps, undo stack: a client keeps no copy of its own), with what the wire
needs: the model worker it is pinned to, the tool's image state (so that worker's segmenter can
switch to this session's image without recomputing its embedding) and a mask *revision*
counter. Every call that can change the mask returns a `MaskUpdate`, the delta from the mask
before the call (the revision the client holds) to the mask after it, so per-step answers carry
only the changed box, and the episode's `view` (clicks, step count, stop reason, answer, whether
undo can change anything), which the client shows as it is.

With ``ibisagent serve --record DIR`` each session is also recorded for training: a
`ibisagent.training.recorder.SessionRecording` listens to the episode (every applied step is
written at once, undone ones are removed), and `finish_record` writes the final mask and the
IoUs when the session ends (closed, expired, or the server stopping).

Memory: ``held_bytes`` is what the session is counted for against the server's cap
(`session_bytes`, from the image size, before the image is even decoded).

Locking: ``lock`` serialises everything done to this session. Model calls (open, propose, apply,
run) run on the thread of the session's own worker (never another, so the image state is only
ever used by the engine that made it) and take ``lock`` there; calls that need no model (state,
mask, skip, undo, replace_mask) take it on a pool thread. The order is always worker slot, then
session lock, and nothing holding a session lock waits for the worker, so there is no deadlock.
"""

from __future__ import annotations

import base64
import math
import threading
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from .. import mask_codec
from ..clicks import Click
from ..engine import Engine
from ..episode import Episode
from ..training.recorder import SessionRecording, TrainingRecorder
from .worker import ModelWorker

#: Bytes a session holds per pixel of its image while it lives: the uploaded image, the episode's
#: masks and undo history, the tool's image state and what a step leaves behind. Measured with
#: `benchmarks/bench_server_memory.py` (RSS growth per open 2000 x 2000 session with the
#: heuristic policy and graphcut: 52 to 69 B per pixel after one step), rounded up.
SESSION_BYTES_PER_PIXEL = 80


def session_bytes(rows: int, cols: int) -> int:
    """The memory a session on a ``rows`` x ``cols`` image is counted for."""
    return int(rows) * int(cols) * SESSION_BYTES_PER_PIXEL


class AgentSession:
    def __init__(self, session_id: str, episode: Episode, image_state: object, image_meta: Dict[str, Any],
                 worker: ModelWorker) -> None:
        self.id = session_id
        self.worker = worker
        #: The engine's episode (the worker's tool and policy are set on it before each model call).
        self.episode = episode
        self.image_state = image_state
        self.image_meta = image_meta
        self.lock = threading.Lock()
        #: Model calls accepted for this session and not finished yet; counted on the event loop
        #: by `ServerState.session_call`. A session with calls in flight is never expired.
        self.in_flight = 0
        #: Counts the masks the client was sent; a `MaskUpdate` goes from ``revision - 1``.
        self.revision = 0
        rows, cols = episode.mask.shape
        #: What this session is counted for against ``Settings.max_session_bytes``.
        self.held_bytes = session_bytes(rows, cols)

    # -- model calls: run on the worker thread ---------------------------------------------------
    @classmethod
    def open(cls, engine: Engine, worker: ModelWorker, session_id: str, image: np.ndarray, request: str,
             mask: Optional[np.ndarray], max_steps: int, image_meta: Dict[str, Any],
             record_dir: Optional[str] = None) -> "AgentSession":
        """Compute the image's embedding once, on ``worker`` (whose engine is ``engine``), and
        start the episode from ``mask`` (or nothing); with ``record_dir``, record it there.

        Each session has a recorder of its own, so a long-running server keeps nothing of the
        sessions that ended."""
        engine.segmenter.set_image(image)
        state = engine.segmenter.image_state()
        episode = Episode(image, engine.segmenter, engine.policy, request, mask, max_steps, image_is_set=True)
        if record_dir is not None:
            TrainingRecorder(record_dir).record(episode, source="server")
        return cls(session_id, episode, state, image_meta, worker)

    def propose(self, engine: Engine) -> Dict[str, Any]:
        with self.lock:
            self._activate(engine)
            proposal = self.episode.propose()
            return dict(_proposal(proposal.to_dict()), view=self.view())

    def apply(self, engine: Engine, clicks: List[Click]) -> Dict[str, Any]:
        with self.lock:
            self._activate(engine)
            return self._changing(lambda: {"step": _step(self.episode.apply(clicks).to_dict())})

    def run(self, engine: Engine, max_steps: Optional[int]) -> Dict[str, Any]:
        with self.lock:
            self._activate(engine)
            before = len(self.episode.steps)
            return self._changing(lambda: {"steps": [_step(s.to_dict())
                                                     for s in self.episode.run(max_steps).steps[before:]]})

    def _activate(self, engine: Engine) -> None:
        engine.segmenter.use_image_state(self.image_state)
        self.episode.segmenter = engine.segmenter
        self.episode.policy = engine.policy

    # -- no model needed: run on a pool thread ---------------------------------------------------
    def skip(self) -> Dict[str, Any]:
        with self.lock:
            self.episode.skip()
            return {"view": self.view()}

    def undo(self) -> Dict[str, Any]:
        with self.lock:
            return self._changing(lambda: {"undone": self.episode.undo()})

    def replace_mask(self, data: bytes) -> Dict[str, Any]:
        """``data``: a full mask, or a delta against the current mask (mask_codec)."""
        with self.lock:
            mask = mask_codec.decode_mask(data, base=self.episode.mask)

            def replace() -> Dict[str, Any]:
                self.episode.replace_mask(mask)
                return {}

            return self._changing(replace)

    def _changing(self, change: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
        """Run ``change`` (which may change the mask) and add the mask update and the view. The
        episode never changes a mask array in place (each change makes a new one), so the mask
        before the call is the one the client holds."""
        before = self.episode.mask
        answer = change()
        data = mask_codec.encode_mask(self.episode.mask, base=before)
        self.revision += 1
        answer.update(mask={"revision": self.revision, "base_revision": self.revision - 1, "data": _b64(data)},
                      view=self.view())
        return answer

    def view(self) -> Dict[str, Any]:
        """What the client shows of the episode besides the mask (`ibisagent.client.RemoteSession`)."""
        episode = self.episode
        return {
            "clicks": [c.to_dict() for c in episode.clicks],
            "step_count": len(episode.steps),
            "pending": episode.pending is not None,
            "stop_reason": episode.stop_reason,
            "answer": episode.answer,
            "can_undo": episode.can_undo,
        }

    # -- the training record ---------------------------------------------------------------------
    @property
    def recorded(self) -> bool:
        """The session is being recorded for training (until `finish_record` or `discard_record`)."""
        return SessionRecording.of(self.episode) is not None

    def finish_record(self) -> Optional[str]:
        """Write the record's final mask and every step's IoU against it, and stop recording;
        returns the record folder. Called once, when the session ends; later calls (and any step
        still applied afterwards) record nothing and return None."""
        with self.lock:
            recording = SessionRecording.of(self.episode)
            if recording is None:
                return None
            recording.stop()
            return recording.finish()

    def discard_record(self) -> None:
        """Delete the record (the session never reached a client) and stop recording."""
        with self.lock:
            recording = SessionRecording.of(self.episode)
            if recording is not None:
                recording.discard()

    def full_mask(self) -> Dict[str, Any]:
        with self.lock:
            return {"revision": self.revision, "data": _b64(mask_codec.encode_mask(self.episode.mask))}

    def state(self, expires_in_s: float) -> Dict[str, Any]:
        with self.lock:
            episode = self.episode
            rows, cols = episode.mask.shape
            return {
                "session_id": self.id,
                "rows": rows,
                "cols": cols,
                "request": episode.request,
                "max_steps": episode.max_steps,
                "image_meta": self.image_meta,
                "revision": self.revision,
                "clicks": [c.to_dict() for c in episode.clicks],
                "steps": [_step(s.to_dict()) for s in episode.steps],
                "pending": _proposal(episode.pending.to_dict()) if episode.pending else None,
                "stop_reason": episode.stop_reason,
                "answer": episode.answer,
                "can_undo": episode.can_undo,
                "expires_in_s": round(expires_in_s, 3),
            }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _finite(value: float) -> Optional[float]:
    """JSON has no NaN or infinity; a tool's undefined score travels as null."""
    return float(value) if math.isfinite(value) else None


def _proposal(data: Dict[str, Any]) -> Dict[str, Any]:
    data["seconds"] = _finite(data["seconds"]) or 0.0
    return data


def _step(data: Dict[str, Any]) -> Dict[str, Any]:
    data["score"] = _finite(data["score"])
    if data["proposal"] is not None:
        _proposal(data["proposal"])
    return data
