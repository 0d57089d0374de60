"""The thread agent calls run on, and the main-thread wait that lets it run.

`AgentWorker` is one daemon thread that runs submitted calls one at a time, in order, and hands
back a ``concurrent.futures.Future``; `AgentWorker.call` runs one and waits for it (`wait_for`).
A cancelled wait leaves its call running on the old thread (its answer is dropped) and gives
the worker a fresh thread, so later calls never queue behind a hung one. It is written out
here rather than taken from ``ThreadPoolExecutor`` because the executor's threads are joined when Python exits (CPython 3.9+
registers ``concurrent.futures.thread._python_exit`` with ``threading._register_atexit``): one
hung server call would then keep Slicer from quitting. A daemon thread is dropped at exit.

`wait_for` is how the main thread waits for a call. Slicer's PythonQt never enables its thread
support (Slicer does not call ``PythonQt::setEnableThreadSupport``), so the main thread keeps the
GIL while it is inside any Qt call, a nested ``QEventLoop.exec_()`` included, and a Python worker
thread barely runs meanwhile. `wait_for` therefore waits in Python (``concurrent.futures.wait``
with a short timeout, which releases the GIL) and calls ``tick`` (the widget passes
``slicer.app.processEvents``) between waits, so the panel stays alive and the worker runs at full
speed.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, wait
from typing import Callable, Optional

from ibisagent.errors import Cancelled

#: Seconds between two ``tick`` calls while waiting (the GIL is free during each wait).
WAIT_INTERVAL_S = 0.03


class AgentWorker:
    """One daemon thread running submitted calls in order. Never touches Qt or MRML itself."""

    def __init__(self, name: str = "IBISAgent") -> None:
        self._name = name
        self._start()

    def _start(self) -> None:
        self._calls: "queue.SimpleQueue" = queue.SimpleQueue()
        self._busy = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._calls, self._busy), name=self._name,
                                        daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """True while a call is running."""
        return self._busy.is_set()

    def submit(self, function: Callable[[], object]) -> Future:
        """Queue ``function`` (no arguments); its result or exception lands in the Future."""
        future: Future = Future()
        self._calls.put((future, function))
        return future

    def call(self, function: Callable[[], object], tick: Callable[[], None] = lambda: None,
             should_cancel: Callable[[], bool] = lambda: False, on_slow: Optional[Callable[[], None]] = None,
             slow_after: float = 2.0):
        """Run ``function`` on the thread and return its result (or raise its exception),
        waiting with `wait_for` (same arguments). When the wait is cancelled (``Cancelled``
        raised), the call goes on on the old thread, which ends after it, and later calls run on
        a fresh one."""
        future = self.submit(function)
        try:
            return wait_for(future, tick, should_cancel, on_slow=on_slow, slow_after=slow_after)
        except Cancelled:
            self.shutdown()
            self._start()
            raise

    def shutdown(self) -> None:
        """Let the thread end after the calls already queued; returns at once."""
        self._calls.put(None)

    @staticmethod
    def _run(calls: "queue.SimpleQueue", busy: threading.Event) -> None:
        while True:
            item = calls.get()
            if item is None:
                return
            future, function = item
            if not future.set_running_or_notify_cancel():
                continue
            busy.set()
            try:
                future.set_result(function())
            except BaseException as error:  # noqa: BLE001 - handed to the waiting caller
                future.set_exception(error)
            finally:
                busy.clear()


def wait_for(future: Future, tick: Callable[[], None] = lambda: None,
             should_cancel: Callable[[], bool] = lambda: False,
             interval: float = WAIT_INTERVAL_S, on_slow: Optional[Callable[[], None]] = None,
             slow_after: float = 2.0):
    """The result of ``future`` (or its exception), waiting with the GIL released and calling
    ``tick`` every ``interval`` seconds. Raises ``ibisagent.errors.Cancelled`` as soon as
    ``should_cancel()`` is true. ``on_slow`` is called once, after ``slow_after`` seconds (the progress dialog)."""
    started = time.monotonic()
    while True:
        done, _ = wait([future], timeout=interval)
        if done:
            return future.result()
        tick()
        if should_cancel():
            raise Cancelled("Waiting for the agent was cancelled; its answer will be dropped.")
        if on_slow is not None and time.monotonic() - started >= slow_after:
            on_slow()
            on_slow = None
