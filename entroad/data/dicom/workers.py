"""Where the DICOM ingest's work runs: the calling process, local worker processes, or Dask.

Each runner has ``map(fn, items)``, which yields ``fn(item)`` in input order whatever ran
it and when, so records and output bytes do not depend on the runner or the worker count.
``fn`` is a module-level function and items and results are small picklable values (paths,
headers, records): pixels never travel, every worker reads its files and writes its PNGs
itself, so source and output folders must be visible to all workers (a shared file system
on a multi-machine cluster).

Processes rather than threads: pydicom's parsing is pure Python and holds the GIL, and it is
a third of a slice's CPU time; on 2 cores a process pool doubles the rate where threads
gained ~10%. Local pools fork (no re-import of numpy / pydicom per worker), so starting
one costs milliseconds.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def default_workers() -> int:
    return os.cpu_count() or 1


def _chunks(items: list[Any], n: int) -> list[list[Any]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def _batch_size(n_items: int, workers: int) -> int:
    """Items per message: few enough round trips, yet ~8 batches per worker to balance load."""
    return max(1, min(64, -(-n_items // (workers * 8))))


class Serial:
    """``workers=1``: everything in the calling process, in order."""

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        return map(fn, items)

    def close(self) -> None:
        return None


def _die_with_parent(parent: int) -> None:
    """Pool initializer. A forked worker inherits its parent's open files, the pipeline lock
    among them; when the parent is killed (SIGKILL: no cleanup runs), an idle worker waits on
    its queue forever and the lock stays taken. On Linux the kernel now kills the worker with
    its parent; elsewhere a worker whose parent is already gone exits at start."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


_PR_SET_PDEATHSIG = 1


class Processes:
    """A local process pool (forked where the platform allows), whose workers die with it."""

    def __init__(self, workers: int):
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self.workers = workers
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_die_with_parent,
                                        initargs=(os.getpid(),))

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        items = list(items)
        return self.pool.map(fn, items, chunksize=_batch_size(len(items), self.workers))

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _run_batch(fn: Callable[[Any], Any], batch: list[Any]) -> list[Any]:
    return [fn(item) for item in batch]


class DaskWorkers:
    """Batches of items as Dask tasks on ``client``'s workers. A task whose worker dies is
    run again by the scheduler; every task writes the same files whoever runs it, so a
    re-run replaces a partial result with identical bytes."""

    def __init__(self, client: Any):
        self.client = client

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        items = list(items)
        workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        batches = _chunks(items, _batch_size(len(items), workers))
        futures = self.client.map(_run_batch, [fn] * len(batches), batches, pure=False)
        try:
            for fut in futures:
                yield from fut.result()
        finally:
            self.client.cancel([f for f in futures if not f.done()])

    def close(self) -> None:
        return None


def runner(workers: int, client: Any = None) -> Serial | Processes | DaskWorkers:
    """Dask when a client is given, else processes (``workers`` > 1) or the calling process."""
    if client is not None:
        return DaskWorkers(client)
    return Serial() if workers <= 1 else Processes(workers)
