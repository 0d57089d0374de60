"""The model worker threads: each owns its own engine (policy + tool).

A `ModelWorker` is one thread with one engine. Every model call it gets runs there, one at a
time in arrival order: GPU models are not safe to drive from several threads, and one owner
means no model lock is needed. The engine is built on that same thread, so a backend that binds
a CUDA context to its creating thread is used from that thread only. The asyncio event loop only
awaits these jobs, so `/health` and requests that need no model keep answering while a long
model call runs. When ``max_queue`` jobs are already waiting for a worker, new ones are refused
at once (`WorkerBusy` -> 503 with Retry-After) instead of piling up behind a slow model.

A `WorkerPool` holds ``N`` such workers, each with an engine of its own built by the same
factory. A session is pinned to one worker when it opens (the one with the fewest sessions), so
its image state (the tool's embedding) stays with the engine that computed it and no model
object is ever used by two threads. ``N > 1`` lets CPU-only engines use several cores; GPU
engines keep ``N = 1`` (see `default_workers`).
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, List, Optional, TypeVar

from ..engine import Engine, EngineSpec

T = TypeVar("T")


#: Builds an engine; called once per worker, on that worker's thread. Tests pass factories of fakes.
EngineFactory = Callable[[], Engine]


def default_workers(engine: EngineSpec) -> int:
    """How many workers `ibisagent serve` starts when ``--workers`` is not given.

    One when the policy or the tool is a torch model (qwen, sam, sam2, litemedsam): a second copy
    would double GPU memory, and two threads sharing one GPU gain little. Otherwise
    ``min(2, os.cpu_count())``: the CPU engines run one click on one core (the max-flow and watershed are
    sequential), and SimpleITK and numpy release the GIL inside their calls, so a second worker
    thread puts the second core to work; more than two gains little on the 2-core workstations
    this targets, against the memory each copy of the engine takes (growcut's ITK about 0.9 GB).
    """
    if engine.cpu_only:
        return max(1, min(2, os.cpu_count() or 1))
    return 1


class WorkerBusy(RuntimeError):
    """Too many model jobs are waiting."""


class WorkerNotReady(RuntimeError):
    """The models are not loaded (still loading, failed to load, or shut down)."""


class ModelWorker:
    """One thread and the engine it owns. ``sessions`` (the sessions pinned here) is kept by the
    `WorkerPool` on the event loop thread only."""

    def __init__(self, engine_factory: EngineFactory, max_queue: int, index: int) -> None:
        self.index = index
        self._factory = engine_factory
        self._max_queue = max_queue
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ibisagent-model-{index}")
        self._lock = threading.Lock()
        self._queued = 0
        self.sessions = 0
        self.engine: Optional[Engine] = None

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
            raise WorkerNotReady("The models are not loaded (the server is starting or stopping).")
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


class WorkerPool:
    """``count`` workers, each with its own engine, and the rule that pins sessions to them.

    `assign` and `release` run on the event loop thread only, so the session counts need no lock.
    """

    def __init__(self, engine_factory: EngineFactory, count: int, max_queue: int) -> None:
        if count < 1:
            raise ValueError(f"The server needs at least one model worker; got {count}.")
        self.workers: List[ModelWorker] = [ModelWorker(engine_factory, max_queue, i) for i in range(count)]
        #: Why an engine could not be built, if one could not.
        self.load_error: Optional[str] = None

    @property
    def ready(self) -> bool:
        """True when every worker has its engine; a plain read, so `/health` never waits."""
        return all(worker.ready for worker in self.workers)

    @property
    def engine(self) -> Optional[Engine]:
        """The first worker's engine, for describing the server (all engines are alike)."""
        return self.workers[0].engine

    async def start(self) -> None:
        """Build the engines one worker after the other (some builders, e.g. ITK's lazy loader,
        are not safe to run twice at once); raises whatever a factory raises."""
        for worker in self.workers:
            await worker.start()

    def assign(self) -> ModelWorker:
        """Pin a new session to the worker with the fewest sessions (then the shortest queue).
        The caller must `release` it when the session ends or fails to open."""
        if not self.ready:
            if self.load_error:
                raise WorkerNotReady(f"Loading the models failed ({self.load_error}); see the server log.")
            raise WorkerNotReady("The models are still loading.")
        worker = min(self.workers, key=lambda w: (w.sessions, w.queued, w.index))
        worker.sessions += 1
        return worker

    @staticmethod
    def release(worker: ModelWorker) -> None:
        worker.sessions -= 1

    def shutdown(self) -> None:
        for worker in self.workers:
            worker.shutdown()
