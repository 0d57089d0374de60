"""Everything the server is configured with, in one immutable object.

Built by `ibisagent serve` from its command line (see `run.py`) or directly by tests, which pass
small caps and short lifetimes. Nothing is read at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .. import memory, protocol
from ..engine import EngineSpec

#: The default cap on the memory the sessions hold: this fraction of the machine's memory.
SESSION_MEMORY_FRACTION = 0.5


def default_session_bytes() -> int:
    """`SESSION_MEMORY_FRACTION` of the machine's physical memory (4 GB when unknown)."""
    return int((memory.machine_bytes() or 8 * 2**30) * SESSION_MEMORY_FRACTION)


@dataclass(frozen=True)
class Settings:
    """``token``: the bearer token clients must send (never empty). ``engine``: the policy and
    tool each model worker builds (`ibisagent.engine.EngineSpec`). ``session_ttl_s``: idle
    seconds after which a session is reaped. ``max_queue``: model jobs waiting for one worker
    before new ones for it get 503. ``max_sessions``: live sessions before new ones get 503.
    ``workers``: model worker threads, each with its own engine (`ibisagent serve` picks the
    default with `worker.default_workers`; tests and direct callers get exactly what they ask).
    ``record_dir``: a local folder where every session is recorded for training (one trajectory
    record per session, see `ibisagent.training.records`); None (the default) records nothing.
    ``max_session_bytes``: the memory all sessions together may hold (their images, masks, undo
    history and the tool's image state, estimated per pixel: `agent_session.session_bytes`);
    a session that would go beyond it is refused (default: `default_session_bytes`).
    ``api_docs``: serve ``/docs`` and ``/openapi.json`` (to holders of the token only); off by
    default."""

    token: str
    host: str = protocol.DEFAULT_HOST
    port: int = protocol.DEFAULT_PORT
    engine: EngineSpec = field(default_factory=EngineSpec)
    max_body_bytes: int = 64 * 1024 * 1024
    session_ttl_s: float = 1800.0
    reaper_interval_s: float = 30.0
    max_sessions: int = 64
    max_queue: int = 32
    workers: int = 1
    max_run_steps: int = 100
    retry_after_s: int = 2
    record_dir: Optional[str] = None
    max_session_bytes: int = field(default_factory=default_session_bytes)
    api_docs: bool = False

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("The server needs a non-empty bearer token.")
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes must be at least 1024; got {self.max_body_bytes}.")
        if self.session_ttl_s <= 0 or self.reaper_interval_s <= 0:
            raise ValueError("session_ttl_s and reaper_interval_s must be positive.")
        if self.max_sessions < 1 or self.max_queue < 1 or self.workers < 1:
            raise ValueError("max_sessions, max_queue and workers must be at least 1.")
        if self.max_session_bytes < 2**20:
            raise ValueError(f"max_session_bytes must be at least 1 MB; got {self.max_session_bytes}.")
        if self.record_dir is not None and not str(self.record_dir).strip():
            raise ValueError("The record folder is empty; give --record the folder to record sessions into.")
