"""The FastAPI application factory.

`make_app(settings, engine_factory)` builds a fresh app with no global state, so tests can run
several servers with fakes side by side. Nothing heavy happens until the app starts.

Concurrency model (see also `worker.py` and `agent_session.py`):

- The asyncio event loop does I/O, auth, session lookup and lease renewal only. The session
  table is touched only from it, so it has no lock.
- One model worker thread owns the policy and the tool; every model call of every session runs
  there in arrival order (this is the GPU lock). Its queue is capped; overflow gets 503.
- Each session has a lock. Model calls take it on the worker thread; calls needing no model
  (state, mask, skip, undo, replace) take it on a pool thread. Lock order: worker slot, then
  session lock; nothing holding a session lock waits for the worker.
- Models load in the background after start-up, so `/health` answers at once with
  ``ready: false``; model calls get 503 until loading ends.
- A reaper task ends sessions idle longer than ``session_ttl_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Optional

from fastapi import FastAPI

from .. import __version__, protocol
from .body_limit import BodyLimit
from .deps import ServerState
from .errors import install_handlers
from .routes import health, sessions, steps
from .sessions import SessionStore, reap_forever
from .settings import Settings
from .worker import EngineFactory, ModelWorker, engine_factory_from_settings

log = logging.getLogger("ibisagent.server")

ROUTERS = (health.router, sessions.router, steps.router)


def make_app(settings: Settings, engine_factory: Optional[EngineFactory] = None) -> FastAPI:
    """Build the server. ``engine_factory`` defaults to the policy and tool named in ``settings``."""
    factory = engine_factory or engine_factory_from_settings(settings)
    state = ServerState(
        settings=settings,
        store=SessionStore(settings.session_ttl_s, settings.max_sessions),
        worker=ModelWorker(factory, settings.max_queue),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        loading = asyncio.create_task(_load(state.worker))
        reaper = asyncio.create_task(reap_forever(state.store, settings.reaper_interval_s))
        try:
            yield
        finally:
            for task in (reaper, loading):
                task.cancel()
            state.store.clear()
            state.worker.shutdown()

    app = FastAPI(
        title="IBISAgent agent server",
        version=__version__,
        summary=f"API {protocol.API_VERSION}: interactive, click-by-click medical image segmentation.",
        lifespan=lifespan,
    )
    app.state.ibis = state
    install_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


async def _load(worker: ModelWorker) -> None:
    try:
        await worker.start()
    except Exception as error:  # the server stays up to say so on every model call
        worker.load_error = f"{type(error).__name__}: {error}"
        log.error("loading the models failed: %s", worker.load_error)
    else:
        log.info("models ready")
