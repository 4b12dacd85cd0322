"""Bulk work on every core: forked workers that inherit the open vault.

Why fork rather than spawn: a worker needs the unwrapped keys and the rows it works on.
A forked child already has them in its (copied) memory, so no key and no plaintext is
ever pickled through a pipe; only the results travel back, and those are ciphertext,
keyed index terms or verdicts. Children never touch the parent's database connection
and leave with ``os._exit`` (multiprocessing's fork start method), so nothing the
parent owns is closed or flushed twice.

Used for big batches only (``add_many``, rotation batches); below ``MIN_ITEMS`` the
fork costs more than it saves, and where fork is unavailable everything runs in-process.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")

#: Work items below which the caller should not bother forking (tests lower it).
MIN_ITEMS = 4000

#: Rows (or records) per work item handed to a worker.
CHUNK = 1000

# The task a worker runs; set only around the fork (under the lock, so two threads
# opening pools at once cannot hand each other's task to their workers).
_TASK: Callable[[Any], Any] | None = None
_FORK_LOCK = threading.Lock()


def _run(arg: Any) -> Any:
    assert _TASK is not None
    return _TASK(arg)


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
    def __init__(self, pool: Any, size: int) -> None:
        self._pool = pool
        self.size = size

    def imap(self, args: Any) -> Iterator[Any]:
        return self._pool.imap(_run, args)


@contextmanager
def pool(task: Callable[[Any], T], workers: int | None = None) -> Iterator[InProcess | Forked]:
    """A pool whose ``imap(args)`` yields ``task(arg)`` in order.

    ``task`` and everything it refers to are captured at the fork: later changes in the
    parent (new keys, say) are not seen by the workers, so open the pool after them."""
    global _TASK
    n = worker_count() if workers is None else workers
    if n < 2:
        yield InProcess(task)
        return
    with _FORK_LOCK:
        _TASK = task
        try:
            p = multiprocessing.get_context("fork").Pool(n)
        except (OSError, ValueError):
            p = None
        finally:
            _TASK = None
    if p is None:
        yield InProcess(task)
        return
    try:
        yield Forked(p, n)
    finally:
        p.terminate()  # results are all in (or we are unwinding an error): stop the workers now
        p.join()
