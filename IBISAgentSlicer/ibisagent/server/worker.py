"""The one thread that owns the models.

All policy and segmentation-tool calls of all sessions run, one at a time in arrival order, on a
single thread: GPU models are not safe to drive from several threads, and one owner means no
model lock is needed. The asyncio event loop only awaits these jobs, so `/health` and requests
that need no model keep answering while a long model call runs. When ``max_queue`` jobs are
already waiting, new ones are refused at once (`WorkerBusy` -> 503 with Retry-After) instead of
piling up behind a slow model.

The engine (policy + tool) is built on this same thread, so a backend that binds a CUDA context
to its creating thread is used from that thread only.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

from ..policies import Policy, build_policy
from ..segmenters import Segmenter, build_segmenter
from .settings import Settings

T = TypeVar("T")


@dataclass
class Engine:
    """The loaded models: one policy and one segmentation tool, shared by all sessions."""

    policy: Policy
    segmenter: Segmenter

    @property
    def device(self) -> str:
        for part in (self.segmenter, self.policy):
            device = getattr(part, "device", None)
            if device:
                return str(device)
        return "cpu"

    def close(self) -> None:
        self.policy.close()


#: Builds the engine; called once, on the worker thread. Tests pass factories of fakes.
EngineFactory = Callable[[], Engine]


def engine_factory_from_settings(settings: Settings) -> EngineFactory:
    """The factory `ibisagent serve` uses: the policy and tool named in the settings."""

    def build() -> Engine:
        return Engine(
            build_policy(settings.policy, **settings.policy_options),
            build_segmenter(settings.segmenter, **settings.segmenter_options),
        )

    return build


class WorkerBusy(RuntimeError):
    """Too many model jobs are waiting."""


class WorkerNotReady(RuntimeError):
    """The models are not loaded (still loading, failed to load, or shut down)."""


class ModelWorker:
    def __init__(self, engine_factory: EngineFactory, max_queue: int) -> None:
        self._factory = engine_factory
        self._max_queue = max_queue
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ibisagent-model")
        self._lock = threading.Lock()
        self._queued = 0
        self.engine: Optional[Engine] = None
        #: Why the engine could not be built, if it could not.
        self.load_error: Optional[str] = None

    @property
    def ready(self) -> bool:
        return self.engine is not None

    @property
    def queued(self) -> int:
        return self._queued

    async def start(self) -> None:
        """Build the engine on the worker thread; raises whatever the factory raises."""
        loop = asyncio.get_running_loop()
        self.engine = await loop.run_in_executor(self._executor, self._factory)

    async def call(self, job: Callable[..., T], *args: Any) -> T:
        """Run ``job(engine, *args)`` on the worker thread and return its result."""
        engine = self.engine
        if engine is None:
            if self.load_error:
                raise WorkerNotReady(f"Loading the models failed ({self.load_error}); see the server log.")
            raise WorkerNotReady("The models are still loading.")
        with self._lock:
            if self._queued >= self._max_queue:
                raise WorkerBusy(f"{self._queued} model jobs are already waiting.")
            self._queued += 1
        return await asyncio.wrap_future(self._executor.submit(self._counted, job, engine, *args))

    def _counted(self, job: Callable[..., T], engine: Engine, *args: Any) -> T:
        try:
            return job(engine, *args)
        finally:
            with self._lock:
                self._queued -= 1

    def shutdown(self) -> None:
        """Stop taking jobs, drop waiting ones, release the models. Safe to call twice."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.close()
