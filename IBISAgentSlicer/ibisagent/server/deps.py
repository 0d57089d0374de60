"""Request dependencies, so each route is a few lines: auth is one parameter, the session
lookup (with lease renewal and the 410 for a gone session) another, and engine calls go through
one helper that turns engine errors into protocol errors (running out of memory included:
never a 500 with an empty message).

The session table and the worker session counts belong to the event loop thread (see
`sessions.py`): whatever touches them here is ``async def`` or runs inside a coroutine, never in
a plain ``def`` dependency (FastAPI runs those on its thread pool) or in a `quick_call` job."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Iterator, Optional, TypeVar

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .. import memory, protocol
from ..mask_codec import MaskCodecError
from .agent_session import AgentSession, session_bytes
from .auth import token_matches
from .errors import ApiError, out_of_memory
from .sessions import SessionGone, SessionStore, SessionTooLarge, TooManySessions
from .settings import Settings
from .worker import ModelWorker, WorkerBusy, WorkerNotReady, WorkerPool

log = logging.getLogger("ibisagent.server")
T = TypeVar("T")


@dataclass
class ServerState:
    """What the routes share; one per app, built by `make_app`. ``record_writer``: the thread
    that finishes training records (see `session_ended`); it starts on first use."""

    settings: Settings
    store: SessionStore
    workers: WorkerPool
    record_writer: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="ibisagent-records"))
    _tasks: set = field(default_factory=set)

    def busy(self, why: str) -> ApiError:
        """503 for a full model queue: it drains within seconds."""
        return ApiError(
            protocol.SERVER_BUSY, f"The server is busy: {why} Retry in {self.settings.retry_after_s} s.",
            {protocol.RETRY_AFTER: str(self.settings.retry_after_s)},
        )

    @staticmethod
    def full(error: TooManySessions) -> ApiError:
        """503 for a full session table or memory cap; its message already says when to retry."""
        return ApiError(protocol.SERVER_BUSY, f"The server is full: {error}",
                        {protocol.RETRY_AFTER: str(error.retry_after_s)})

    async def open_session(self, job: Callable[..., AgentSession], *args: Any) -> AgentSession:
        """Pin a new session to the least-loaded worker, run ``job(engine, worker, *args)`` there
        (it builds the session and its embedding) and add the session to the store."""
        with self._engine_errors():
            worker = self.workers.assign()
        try:
            session = await self.model_call(worker, job, worker, *args)
            self.store.add(session)
        except TooManySessions as error:
            self.workers.release(worker)
            session.discard_record()  # no client ever saw this session
            self.forget_image(session)
            raise self.full(error) from None
        except BaseException:
            self.workers.release(worker)
            raise
        return session

    def session_ended(self, session: AgentSession) -> None:
        """The store ended ``session`` (closed, expired, or the server stopping; called once per
        session, on the event loop like every store call): free its worker slot, and finish its
        training record on the record writer, since that reads and writes files and waits for
        the session lock, which a model call may hold."""
        self.workers.release(session.worker)
        if session.recorded:
            self.record_writer.submit(_finish_record, session)
        self.forget_image(session)

    def forget_image(self, session: AgentSession) -> None:
        """Let the session's worker drop the tool's current image state and give the freed
        memory back to the system (`_forget_image`). Runs a moment later, on the worker, holding
        nothing of the session, so its arrays are freed first; nothing is waited for."""
        worker = session.worker
        if worker.engine is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(_forget_on_worker(worker))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def finish_records(self) -> None:
        """Wait until every training record handed to the record writer is written (at shutdown,
        after the store ended the last sessions)."""
        await asyncio.to_thread(self.record_writer.shutdown, True)

    async def session_call(self, session: AgentSession, job: Callable[..., T], *args: Any) -> T:
        """A model call for ``session`` on its own worker: while it runs the session counts as
        busy (never expired), and its lease starts again when the call ends."""
        session.in_flight += 1
        try:
            return await self.model_call(session.worker, job, *args)
        finally:
            session.in_flight -= 1
            self.store.renew(session.id)

    async def model_call(self, worker: ModelWorker, job: Callable[..., T], *args: Any) -> T:
        """Run ``job(engine, *args)`` on ``worker`` (the session's own); map its failures to
        protocol errors."""
        with self._engine_errors():
            return await worker.call(job, *args)

    @contextlib.contextmanager
    def _engine_errors(self) -> Iterator[None]:
        try:
            yield
        except WorkerBusy as error:
            raise self.busy(str(error)) from None
        except WorkerNotReady as error:
            if self.workers.load_error:
                raise ApiError(protocol.INTERNAL, str(error)) from None
            raise self.busy(str(error)) from None
        except (ValueError, MaskCodecError) as error:
            raise ApiError(protocol.BAD_REQUEST, str(error)) from None
        except MemoryError:
            raise out_of_memory() from None

    async def quick_call(self, job: Callable[..., T], *args: Any) -> T:
        """Run a call that needs no model on a pool thread (it may wait for the session lock)."""
        try:
            return await asyncio.to_thread(job, *args)
        except (ValueError, MaskCodecError) as error:
            raise ApiError(protocol.BAD_REQUEST, str(error)) from None
        except MemoryError:
            raise out_of_memory() from None

    def room_for_session(self, rows: int, cols: int) -> None:
        """Refuse, before the image is decoded, a session on a ``rows`` x ``cols`` image that
        does not fit the session table or the memory cap."""
        try:
            self.store.check_room(session_bytes(rows, cols))
        except SessionTooLarge as error:
            raise ApiError(protocol.BAD_REQUEST, f"The image is {cols} x {rows} pixels. {error}") from None
        except TooManySessions as error:
            raise self.full(error) from None


async def _forget_on_worker(worker: ModelWorker) -> None:
    await asyncio.sleep(FORGET_DELAY_S)  # the request that ended the session lets go of it first
    try:
        await worker.call(_forget_image)
    except (WorkerBusy, WorkerNotReady, RuntimeError):
        pass  # the worker is busy or stopping; the next session's image replaces the state anyway


#: How long after a session ends its memory is given back (the reply to the request ending it is
#: sent meanwhile, and with it the last reference to the session).
FORGET_DELAY_S = 0.2


def _forget_image(engine) -> None:
    """On the worker: drop the tool's current image state (a cache: every model call makes its
    own session's state current first, so this is always safe), collect the ended session's
    objects (an episode's arrays can sit in reference cycles until the cyclic collector runs),
    then return the freed memory to the system."""
    engine.segmenter.reset_image()
    gc.collect()
    memory.return_free_memory()


def _finish_record(session: AgentSession) -> None:
    try:
        folder = session.finish_record()
    except Exception:  # noqa: BLE001 - a record that cannot be written must not stop the server
        log.exception("finishing the training record of session %s failed", session.id)
    else:
        if folder:
            log.info("session %s recorded for training in %s", session.id, folder)


def get_state(request: Request) -> ServerState:
    return request.app.state.ibis


State = Annotated[ServerState, Depends(get_state)]

_bearer = HTTPBearer(auto_error=False, description="The server's token: `ibisagent serve` prints where it is.")


def require_token(
    request: Request,
    state: State,
    credentials: Annotated[Optional[HTTPAuthorizationCredentials], Depends(_bearer)],
) -> None:
    """Check the bearer token, then the client's API version header if it sent one."""
    if credentials is None or not token_matches(state.settings.token, f"Bearer {credentials.credentials}"):
        raise ApiError(
            protocol.UNAUTHORIZED,
            "Missing or wrong bearer token; use the token `ibisagent serve` printed (or IBISAGENT_TOKEN).",
            {"WWW-Authenticate": "Bearer"},
        )
    sent = request.headers.get(protocol.CLIENT_API_VERSION)
    if sent is not None:
        try:
            major = protocol.api_major(sent)
        except ValueError:
            raise ApiError(protocol.BAD_REQUEST, f"{protocol.CLIENT_API_VERSION} {sent!r} is not 'X.Y'.") from None
        if major != protocol.API_MAJOR:
            raise ApiError(
                protocol.INCOMPATIBLE_CLIENT,
                f"This server speaks API {protocol.API_VERSION}; the client speaks {sent}. Upgrade the older side.",
            )


Authorized = Depends(require_token)

SessionId = Annotated[str, Path(pattern=protocol.SESSION_ID_PATTERN, description="32 lowercase hex characters.")]


async def lookup_session(session_id: SessionId, state: State) -> AgentSession:
    """The live session (renewing its lease), or 410. ``async`` on purpose: FastAPI runs a plain
    ``def`` dependency on a pool thread, and the session table (which this may change, ending an
    expired session) belongs to the event loop."""
    try:
        return state.store.get(session_id)
    except SessionGone as error:
        raise ApiError(protocol.SESSION_EXPIRED, str(error)) from None


LiveSession = Annotated[AgentSession, Depends(lookup_session)]
