"""One process-pool runner for jobs over many videos: extraction, checking, calibration, generation.

``map_videos(fn, items, workers)`` calls ``fn(item)`` for every item and yields
``(item, error, value)`` as the calls complete, with a tqdm progress bar:

- ``error`` is None and ``value`` what ``fn`` returned, or ``error`` is the message of what it
  raised (``"VideoReadError: clip.avi: ..."``) and ``value`` None. One bad video never stops
  the others.
- Worker processes are started with ``forkserver`` (``spawn`` where there is none), never
  ``fork``: a process forked after torch, OpenCV or PyAV started their threads can deadlock
  in the child (observed when the motion-vector and extraction tests ran in one process).
  So ``fn`` and the items must be picklable: ``fn`` a module-level function, and a script
  that starts workers needs an ``if __name__ == "__main__":`` guard.
- At most ``2 * workers`` calls are in flight, so a million-video list costs no memory up
  front and Ctrl-C stops after the running calls.
- A worker that dies (a decoder crash) fails the calls it was running; the pool is started
  again for the rest. A pool that dies before any call completes (e.g. a script without the
  ``__main__`` guard) raises :class:`WorkerPoolError` naming that likely cause.
- ``workers <= 1`` (or a single item) runs the calls in this process, the same way.
"""
from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator

from tqdm.auto import tqdm

__all__ = ["map_videos", "WorkerPoolError", "one_thread_per_worker", "pool_context"]


class WorkerPoolError(RuntimeError):
    """The worker processes died before any call completed."""


def pool_context():
    """The multiprocessing context workers are started with: forkserver, else spawn (never fork)."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def one_thread_per_worker() -> None:
    """Worker initialiser: one OpenCV thread (and, in a worker process, one torch thread) per process;
    a process per core already, so their own thread pools would oversubscribe."""
    import cv2

    cv2.setNumThreads(1)
    if multiprocessing.parent_process() is not None and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def map_videos(fn: Callable[[Any], Any], items: Iterable, workers: int, *, desc: str | None = None,
               progress: bool = True, initializer: Callable[[], None] | None = one_thread_per_worker,
               max_in_flight: int | None = None, unit: str = "video", total: int | None = None,
               initial: int = 0) -> Iterator[tuple[Any, str | None, Any]]:
    """Yield ``(item, error message or None, fn(item) or None)`` per item, in completion order.

    Args:
        fn: a module-level function of one argument (it is pickled to the workers).
        items: the jobs, each picklable; consumed lazily.
        workers: processes; 0 or 1 runs everything in this process.
        desc, unit, progress: the progress bar's label, unit and whether to show it; ``total`` and
            ``initial`` its length and starting count (default: ``len(items)`` when it has one, 0).
        initializer: run once in each worker (and once here for ``workers <= 1``); default: one
            OpenCV/BLAS thread per process.
        max_in_flight: calls submitted but not finished (default ``2 * workers``).
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items) + initial  # type: ignore[arg-type]
    bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not progress or total == initial)
    try:
        if workers <= 1 or (hasattr(items, "__len__") and len(items) <= 1):  # type: ignore[arg-type]
            if initializer is not None:
                initializer()
            for item in items:
                yield (item, *_call(fn, item))
                bar.update()
            return
        for result in _pooled(fn, iter(items), workers, initializer, max_in_flight or 2 * workers, desc):
            yield result
            bar.update()
    finally:
        bar.close()


def _pooled(fn, items: Iterator, workers: int, initializer, limit: int, desc: str | None):
    pending: dict = {}
    ever_completed = False
    pool = ProcessPoolExecutor(workers, mp_context=pool_context(), initializer=initializer)
    try:
        exhausted = False
        while True:
            while not exhausted and len(pending) < limit:
                item = next(items, _END)
                if item is _END:
                    exhausted = True
                    break
                try:
                    pending[pool.submit(_call, fn, item)] = item
                except BrokenProcessPool:
                    pending[_failed_future()] = item
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                item = pending.pop(future)
                try:
                    error, value = future.result()
                    ever_completed = True
                except BrokenProcessPool as e:
                    broken = True
                    error, value = f"worker process failed: {type(e).__name__}: {e}", None
                except Exception as e:  # e.g. an item or result that does not pickle
                    error, value = f"{type(e).__name__}: {e}", None
                yield item, error, value
            if broken:
                if not ever_completed:
                    raise WorkerPoolError(
                        f"{desc or 'map_videos'}: the worker processes died before any job completed. "
                        f"A script that starts workers must do so under `if __name__ == '__main__':`; "
                        f"or run with workers=0")
                # The other calls of a broken pool fail too: report them, start a new pool for the rest.
                for future in list(pending):
                    yield pending.pop(future), "worker process failed: the pool broke while it ran", None
                pool.shutdown(wait=True, cancel_futures=True)
                pool = ProcessPoolExecutor(workers, mp_context=pool_context(), initializer=initializer)
    finally:
        # On Ctrl-C or an early exit, drop the queued calls instead of running them all first.
        pool.shutdown(wait=True, cancel_futures=True)


_END = object()


def _failed_future():
    from concurrent.futures import Future

    future: Future = Future()
    future.set_exception(BrokenProcessPool("the pool could not take the job"))
    return future


def _call(fn: Callable, item) -> tuple[str | None, Any]:
    try:
        value = fn(item)
    except Exception as e:  # a bad video must not stop the others; its reason is reported
        return f"{type(e).__name__}: {e}", None
    return None, value
