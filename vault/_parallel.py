"""Bulk work on every core: forked workers that inherit the open vault.

Why fork rather than spawn: a worker needs the unwrapped keys and the rows it works on.
A forked child already has them in its (copied) memory, so no key and no plaintext is
ever pickled through a pipe; only the results travel back, and those are ciphertext,
keyed index terms or verdicts. Children never touch the parent's database connection
and leave with ``os._exit`` (multiprocessing's fork start method), so nothing the
parent owns is closed or flushed twice.

Used for big batches only (``add_many``, rotation and re-index batches, audit verify);
below ``MIN_ITEMS`` the fork costs more than it saves, and where fork is unavailable
everything runs in-process. So does a process in which other threads are running (a web
application importing the library, say): a fork copies only the calling thread, and a
lock another thread held at that moment would stay locked forever in the child.

A task that fails in a worker is run again here, in the parent, where its exception is
raised as it would be without workers (and where a transient failure simply succeeds).
Exceptions are never sent back through the pipe: they need not pickle, and their
messages never leave the process that made them.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, TypeVar

from .errors import VaultError

T = TypeVar("T")

#: Work items below which the caller should not bother forking (tests lower it).
MIN_ITEMS = 4000

#: Rows (or records) per work item handed to a worker.
CHUNK = 1000

#: Work items per worker submitted ahead of the caller (Forked.imap).
AHEAD = 2

# The task a worker runs: set in each worker by the executor's initializer, which a forked
# child receives through its copied memory (nothing is pickled).
_TASK: Callable[[Any], Any] | None = None


class WorkerDied(VaultError):
    """A worker process died (killed, or out of memory) before it answered. The job is
    abandoned and the caller's transaction rolls back: nothing half-written."""


def _install(task: Callable[[Any], Any]) -> None:
    global _TASK
    _TASK = task


def _ready() -> None:
    """A no-op submitted at once so that every worker forks when the pool opens."""


def _run(arg: Any) -> tuple[bool, Any]:
    assert _TASK is not None
    try:
        return True, _TASK(arg)
    except Exception:
        return False, None


def ranges(n: int, size: int) -> list[tuple[int, int]]:
    """``[(lo, hi), ...]`` covering ``range(n)`` in order, ``size`` at a time."""
    return [(lo, min(lo + size, n)) for lo in range(0, n, max(1, size))]


def split(items: list[T], parts: int) -> list[list[T]]:
    """``items`` in at most ``parts`` contiguous, non-empty, near-equal slices (in order)."""
    step = max(1, -(-len(items) // max(1, parts)))
    return [items[i:i + step] for i in range(0, len(items), step)]


def worker_count() -> int:
    """How many workers a batch is worth: the cores we may use, capped at 4; 1 = in-process."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    if cores < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return min(cores, 4)


class InProcess:
    """The pool interface, run here (one core, or no fork on this platform)."""

    size = 1

    def __init__(self, task: Callable[[Any], Any]) -> None:
        self._task = task

    def imap(self, args: Any) -> Iterator[Any]:
        return map(self._task, args)


class Forked:
    """The pool interface over forked workers; ``imap`` keeps a few args per worker submitted ahead.

    Why ``concurrent.futures`` rather than ``multiprocessing.Pool``: a Pool whose worker
    dies (SIGKILL, the OOM killer) replaces it and waits forever for the lost task's
    result; the executor marks itself broken and every pending result raises."""

    def __init__(self, executor: ProcessPoolExecutor, size: int, task: Callable[[Any], Any]) -> None:
        self._executor = executor
        self._task = task
        self.size = size

    def imap(self, args: Any) -> Iterator[Any]:
        """``task(arg)`` for each arg, in order, with at most :data:`AHEAD` items per worker
        submitted and not yet taken. Why a window: a caller slower than the workers (the
        parent writing each finished chunk of an add_many) would otherwise hold every
        chunk's result at once (hundreds of MB for 100,000 rows) before writing them."""
        args = list(args)
        futures: deque[tuple[Any, Future[tuple[bool, Any]]]] = deque()
        self._top_up(args, futures, 0)  # the workers start now, not at the first next()
        return self._collect(args, futures)

    def _top_up(self, args: list[Any], futures: deque[tuple[Any, Future[tuple[bool, Any]]]], nxt: int) -> int:
        """Submit args from ``nxt`` on until the window is full; the next arg to submit."""
        while nxt < len(args) and len(futures) < self.size * AHEAD:
            try:
                futures.append((args[nxt], self._executor.submit(_run, args[nxt])))
            except BrokenProcessPool:
                raise WorkerDied("a worker process died (killed, or out of memory); nothing was written") from None
            nxt += 1
        return nxt

    def _collect(self, args: list[Any], futures: deque[tuple[Any, Future[tuple[bool, Any]]]]) -> Iterator[Any]:
        nxt = len(futures)
        while futures:
            arg, future = futures.popleft()
            try:
                ok, result = future.result()
            except BrokenProcessPool:
                raise WorkerDied("a worker process died (killed, or out of memory); nothing was written") from None
            nxt = self._top_up(args, futures, nxt)  # before the caller works on this result
            yield result if ok else self._task(arg)  # failed over there: raise (or succeed) here


def _stop(executor: ProcessPoolExecutor) -> None:
    """Stop the workers now, whatever they are doing (unwinding an error)."""
    procs = list(getattr(executor, "_processes", {}).values())  # no public way to kill them
    executor.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join()


@contextmanager
def pool(task: Callable[[Any], T], items: int, *, min_items: int | None = None) -> Iterator[InProcess | Forked]:
    """A pool whose ``imap(args)`` yields ``task(arg)`` in order: forked workers for a job of
    ``items`` work items if it has at least ``min_items`` (default :data:`MIN_ITEMS`) and
    this machine has two cores, else this process.

    ``task`` and everything it refers to are captured at the fork, which happens here:
    later changes in the parent (new keys, say) are not seen by the workers, so open the
    pool after them. A worker that dies makes ``imap`` raise :class:`WorkerDied`."""
    n = worker_count() if items >= (MIN_ITEMS if min_items is None else min_items) else 1
    if n < 2 or threading.active_count() > 1:
        yield InProcess(task)
        return
    # Objects that exist at the fork go to the collector's permanent generation while it
    # happens: a worker's collections then never walk the inherited heap (the batch's rows),
    # which would copy every page of it into the worker (copy-on-write). The parent's
    # collector gets them back at once.
    gc.freeze()
    try:
        executor: ProcessPoolExecutor | None = ProcessPoolExecutor(
            n, mp_context=multiprocessing.get_context("fork"), initializer=_install, initargs=(task,))
        assert executor is not None
        executor.submit(_ready).result()  # the fork happens now, before the executor's thread starts
    except (OSError, ValueError, BrokenProcessPool):
        executor = None
    finally:
        gc.unfreeze()
    if executor is None:
        yield InProcess(task)
        return
    try:
        yield Forked(executor, n, task)
    except BaseException:
        _stop(executor)
        raise
    executor.shutdown(wait=True)  # every result is in: let the idle workers exit
