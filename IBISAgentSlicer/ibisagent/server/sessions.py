"""The table of live sessions, their leases, and the reaper that ends idle ones.

Touched only from the asyncio event loop thread, so it needs no lock: its callers are the
reaper task, the ``async`` session-lookup dependency and route coroutines, never a pool thread
(a plain ``def`` FastAPI dependency or a `ServerState.quick_call` job would be one; a lookup
there could end a session while the reaper goes through the table). Every successful
lookup renews the session's lease, and so does the end of each model call. A session idle for
``ttl_s`` seconds is expired: by the reaper, or at once by the next lookup, so a lease past its
time never serves one more call. A session with a model call in flight (``in_flight`` > 0) is
busy, not idle, and is never expired, however long the call takes. Ending a session frees its
image state (the tool's embedding) and calls ``on_end`` (the worker pool uses it to count the
sessions pinned to each worker). Ids of ended sessions are remembered for a while so the error
can say *why* a session is gone; an id never seen (for instance after a server restart) gets the
same 410, since for the client both mean "open a new session".

Room: at most ``max_sessions`` sessions, holding at most ``max_bytes`` together (each counted
for its ``held_bytes``). A new session beyond either is refused with `TooManySessions`, which
says honestly when room may appear: a session is only ever freed by its client closing it or by
its lease running out, so the hint is the earliest moment an idle session can expire. A session
that alone would exceed ``max_bytes`` is refused with `SessionTooLarge` (no wait helps).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections import OrderedDict
from typing import Callable, Dict, List, Tuple

from ..memory import format_bytes
from .agent_session import AgentSession

log = logging.getLogger("ibisagent.server")

EXPIRED = "expired after being idle"
CLOSED = "was closed"
_REMEMBERED = 4096


class SessionGone(LookupError):
    """The session id is unknown, expired or closed."""


class TooManySessions(RuntimeError):
    """The session table or the memory the sessions may hold is full. ``retry_after_s``: the
    earliest a session can be freed (its lease running out), in whole seconds."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SessionTooLarge(ValueError):
    """One session on this image would hold more memory than the server keeps for all of them."""


class SessionStore:
    def __init__(self, ttl_s: float, max_sessions: int, clock: Callable[[], float] = time.monotonic,
                 on_end: Callable[[AgentSession], None] = lambda _session: None,
                 max_bytes: float = math.inf) -> None:
        self.ttl_s = ttl_s
        self._on_end = on_end
        self.max_sessions = max_sessions
        self.max_bytes = max_bytes
        self._clock = clock
        self._live: Dict[str, Tuple[AgentSession, float]] = {}
        self._ended: "OrderedDict[str, str]" = OrderedDict()

    def __len__(self) -> int:
        return len(self._live)

    @staticmethod
    def new_id() -> str:
        return secrets.token_hex(16)

    @property
    def held_bytes(self) -> int:
        """The memory the live sessions are counted for."""
        return sum(session.held_bytes for session, _used in self._live.values())

    def check_room(self, new_bytes: int = 0) -> None:
        """Refuse a new session holding ``new_bytes`` if it does not fit (see the module docstring).
        Sessions whose lease ran out are ended first: they hold no room."""
        self.reap()
        if new_bytes > self.max_bytes:
            raise SessionTooLarge(
                f"A session on this image would hold about {format_bytes(new_bytes)}, more than the "
                f"{format_bytes(self.max_bytes)} this server keeps for all sessions; crop or downsample the image, "
                "or start the server with a larger --max-session-memory-mb.")
        held = self.held_bytes
        if len(self._live) >= self.max_sessions:
            why = f"{len(self._live)} sessions are open, the most this server keeps."
        elif held + new_bytes > self.max_bytes:
            why = (f"its sessions hold {format_bytes(held)} of the {format_bytes(self.max_bytes)} it keeps for images, "
                   f"and this one needs {format_bytes(new_bytes)} more.")
        else:
            return
        wait = self.next_expiry_s()
        raise TooManySessions(
            f"{why} A session is freed when its client closes it or after {self.ttl_s:.0f} s idle; the next can "
            f"expire in {wait} s at the earliest. Close sessions you no longer use, or retry then.", wait)

    def next_expiry_s(self) -> int:
        """Whole seconds until the first idle session's lease runs out (the full lease when every
        session is busy): the earliest a slot can free by itself."""
        now = self._clock()
        idle = [used + self.ttl_s - now for session, used in self._live.values() if session.in_flight == 0]
        return max(1, math.ceil(min(idle) if idle else self.ttl_s))

    def add(self, session: AgentSession) -> None:
        self.check_room(session.held_bytes)
        self._live[session.id] = (session, self._clock())

    def get(self, session_id: str) -> AgentSession:
        """The live session; renews its lease. Raises SessionGone saying why it is not there."""
        entry = self._live.get(session_id)
        if entry is not None and self._idle_too_long(*entry):
            self._end(session_id, EXPIRED)
            entry = None
        if entry is None:
            reason = self._ended.get(session_id)
            if reason is None:
                raise SessionGone(
                    f"Session {session_id} is unknown (the server may have restarted); open a new session."
                )
            raise SessionGone(f"Session {session_id} {reason}; open a new session.")
        self._live[session_id] = (entry[0], self._clock())
        return entry[0]

    def renew(self, session_id: str) -> None:
        """Start the lease of a live session again (after a model call ends)."""
        entry = self._live.get(session_id)
        if entry is not None:
            self._live[session_id] = (entry[0], self._clock())

    def expires_in(self, session_id: str) -> float:
        entry = self._live.get(session_id)
        return 0.0 if entry is None else max(0.0, entry[1] + self.ttl_s - self._clock())

    def close(self, session_id: str) -> None:
        self.get(session_id)
        self._end(session_id, CLOSED)

    def reap(self) -> List[str]:
        """End every session idle for longer than the lease; return their ids."""
        expired = [sid for sid, entry in self._live.items() if self._idle_too_long(*entry)]
        for sid in expired:
            self._end(sid, EXPIRED)
        return expired

    def _idle_too_long(self, session: AgentSession, used: float) -> bool:
        return session.in_flight == 0 and used < self._clock() - self.ttl_s

    def clear(self) -> None:
        for sid in list(self._live):
            self._end(sid, CLOSED)

    def _end(self, session_id: str, reason: str) -> None:
        entry = self._live.pop(session_id, None)
        if entry is not None:
            self._on_end(entry[0])
        self._ended[session_id] = reason
        while len(self._ended) > _REMEMBERED:
            self._ended.popitem(last=False)


async def reap_forever(store: SessionStore, interval_s: float) -> None:
    """The reaper task: every ``interval_s`` seconds, end idle sessions. Cancel it to stop."""
    while True:
        await asyncio.sleep(interval_s)
        for sid in store.reap():
            log.info("session %s expired after %.0f s idle", sid, store.ttl_s)
