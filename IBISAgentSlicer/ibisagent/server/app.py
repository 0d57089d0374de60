"""The FastAPI application factory.

`make_app(settings, engine_factory)` builds a fresh app with no global state, so tests can run
several servers with fakes side by side. Nothing heavy happens until the app starts.

Concurrency model (see also `worker.py` and `agent_session.py`):

- The asyncio event loop does I/O, auth, session lookup and lease renewal only. The session
  table and the per-worker session counts are touched only from it, so they have no lock:
  whatever touches them (the session-lookup dependency included) is ``async def``, because
  FastAPI runs a plain ``def`` dependency on a pool thread.
- ``settings.workers`` model worker threads each own an engine of their own (policy + tool,
  built by ``engine_factory`` on that thread). A session is pinned at creation to the worker
  with the fewest sessions, and all its model calls run on that worker, in arrival order, so
  its image state (the embedding) stays with the engine that computed it and no model object
  is ever used by two threads. One worker is the GPU lock. Each worker's queue is capped at
  ``max_queue``; overflow gets 503 with Retry-After.
- How many workers: `ibisagent serve --workers N`; by default 1 when the policy or the tool is a
  torch model (qwen, sam, sam2, litemedsam: one GPU copy, one owner) and ``min(2, cpu_count)``
  for the CPU-only engines (heuristic/openai policy with graphcut/growcut/watershed), whose single-threaded
  compute would otherwise leave the second core idle (`worker.default_workers`).
- Each session has a lock. Model calls take it on their worker's thread; calls needing no model
  (state, mask, skip, undo, replace) take it on a pool thread. Lock order: worker slot, then
  session lock; nothing holding a session lock waits for a worker, and no worker waits for
  another.
- Models load in the background after start-up, one worker after another, so `/health` (a
  plain read of a flag) answers at once with ``ready: false``; model calls get 503 until every
  worker has its engine.
- A reaper task ends sessions idle longer than ``session_ttl_s``. Sessions together may hold at
  most ``settings.max_session_bytes`` (estimated from each image's size before it is decoded);
  when a session ends, its worker drops the tool's state of its image and freed memory is
  given back to the system.
- The API description (``/openapi.json``) is served only with ``settings.api_docs``, and then only
  to holders of the token; there is no ``/docs`` page (it would load scripts from the internet).
- With ``settings.record_dir`` (``ibisagent serve --record DIR``) every session is recorded for
  training: its steps are written as they are applied (on the threads that apply them), and its
  record is finished exactly once when the store ends the session (closed, expired, or at
  shutdown, which waits for those records to be written).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Callable, Optional

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from .. import __version__, protocol
from ..training.recorder import TrainingRecorder
from .body_limit import BodyLimit
from .deps import Authorized, ServerState
from .errors import install_handlers
from .routes import health, sessions, steps
from .sessions import SessionStore, reap_forever
from .settings import Settings
from .worker import EngineFactory, WorkerPool

log = logging.getLogger("ibisagent.server")

ROUTERS = (health.router, sessions.router, steps.router)
#: Where ``--api-docs`` serves the API description.
OPENAPI = "/openapi.json"


def make_app(settings: Settings, engine_factory: Optional[EngineFactory] = None,
             clock: Callable[[], float] = time.monotonic) -> FastAPI:
    """Build the server. ``engine_factory`` defaults to the policy and tool named in ``settings``;
    ``clock`` (seconds) times the session leases (tests pass one they can advance). A
    ``settings.record_dir`` that is a file raises ValueError."""
    if settings.record_dir is not None:
        TrainingRecorder(settings.record_dir)  # refuses a file, creates the folder: before any session
    factory = engine_factory or settings.engine.engine
    workers = WorkerPool(factory, settings.workers, settings.max_queue)
    state = ServerState(
        settings=settings,
        store=SessionStore(settings.session_ttl_s, settings.max_sessions, clock=clock,
                           on_end=lambda session: state.session_ended(session), max_bytes=settings.max_session_bytes),
        workers=workers,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        loading = asyncio.create_task(_load(workers))
        reaper = asyncio.create_task(reap_forever(state.store, settings.reaper_interval_s))
        try:
            yield
        finally:
            for task in (reaper, loading):
                task.cancel()
            state.store.clear()
            await state.finish_records()
            workers.shutdown()

    app = FastAPI(
        title="IBISAgent agent server",
        version=__version__,
        summary=f"API {protocol.API_VERSION}: interactive, click-by-click medical image segmentation.",
        lifespan=lifespan,
        openapi_url=None, docs_url=None, redoc_url=None,
    )
    app.state.ibis = state
    install_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    if settings.api_docs:
        _add_schema_route(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


def _add_schema_route(app: FastAPI) -> None:
    """``GET /openapi.json`` for holders of the token (``ibisagent serve --api-docs``)."""

    @app.get(OPENAPI, include_in_schema=False, dependencies=[Authorized])
    async def _schema() -> JSONResponse:
        return JSONResponse(app.openapi())



async def _load(workers: WorkerPool) -> None:
    try:
        await workers.start()
    except Exception as error:  # the server stays up to say so on every model call
        workers.load_error = f"{type(error).__name__}: {error}"
        log.error("loading the models failed: %s", workers.load_error)
    else:
        log.info("models ready (%d worker%s)", len(workers.workers), "" if len(workers.workers) == 1 else "s")
