"""Run one function over many items in worker processes, one core each, results in item order.

Used by `ibisagent eval` to spread independent cases over the CPU cores. Each worker process is
started fresh ("spawn", the same on every platform, and safe where the parent already holds
SimpleITK or BLAS threads) and calls ``setup(*setup_args)`` once, so a worker builds its own
segmentation tool and policy; what is sent to it is their names and options, never a live model.

Workers are single-threaded: OpenMP, OpenBLAS, MKL and ITK read their thread counts when they
load, so those variables are set to 1 in the environment the workers start with, and SimpleITK's
global default is set to 1 in each worker as well. N workers then use N cores and no more.
Workers ignore Ctrl-C; the parent gets it and stops them all.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

#: The thread-count variables of the native libraries the classical tools use.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system reports one, which
    is what a container or `taskset` grants; otherwise the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def map_in_workers(
    function: Callable[[Any], Any],
    items: Sequence[Any],
    workers: int,
    setup: Callable[..., None],
    setup_args: Tuple = (),
    on_result: Optional[Callable[[], None]] = None,
) -> List[Any]:
    """``[function(item) for item in items]`` computed by ``workers`` processes (at most one per
    item). ``function`` and ``setup`` must be module-level functions (they are sent by name).
    ``on_result()`` is called in this process as each result arrives (a progress bar). An error
    raised by ``function`` or ``setup`` in a worker is raised here."""
    if workers < 1:
        raise ValueError(f"--workers must be at least 1; got {workers}.")
    results: List[Any] = [None] * len(items)
    if not items:
        return results
    context = multiprocessing.get_context("spawn")
    with _single_threaded_children():
        pool = context.Pool(min(workers, len(items)), initializer=_start_worker, initargs=(setup, setup_args))
    tasks = [(function, index, item) for index, item in enumerate(items)]
    with pool:
        for index, result in pool.imap_unordered(_call_indexed, tasks):
            results[index] = result
            if on_result is not None:
                on_result()
    return results


@contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Set the thread variables to 1 while the workers start (they copy this environment), then
    give this process its own values back."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: "1" for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


#: An error raised by ``setup`` in this worker; raised again by every task, so the parent sees it
#: (a worker whose initializer raises would otherwise be restarted by the pool without end).
_setup_error: Optional[BaseException] = None


def _start_worker(setup: Callable[..., None], setup_args: Tuple) -> None:
    global _setup_error
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import SimpleITK

        SimpleITK.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
        setup(*setup_args)
    except Exception as error:  # noqa: BLE001 - handed to the parent by the first task
        _setup_error = error


def _call_indexed(task: Tuple[Callable[[Any], Any], int, Any]) -> Tuple[int, Any]:
    function, index, item = task
    if _setup_error is not None:
        raise _setup_error
    return index, function(item)
