"""File locks (``fcntl.flock``): one holder at a time, across threads and processes.

* :func:`file_lock` waits for its turn: one DVC command per repository, one ingest per
  dataset folder.
* :func:`pipeline_lock` guards retraining and promotion: two retrain runs (or a retrain and
  ``entroad promote``) on one checkout would race on the training folder and the registry
  aliases. It waits at most ``wait_s``, then names the holder (pid, host, start time and
  purpose are written beside the lock). It is not re-entrant: code that already holds it
  (the retrain flow) tells the functions it calls so (``run_gate(hold_lock=False)``).

The kernel drops a lock when its holder dies, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from entroad.errors import PipelineBusyError

# Beside the embedded MLflow store (entroad.tracking.store.EMBEDDED_DIR; a test keeps them equal).
PIPELINE_LOCK = Path("mlflow") / ".pipeline.lock"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed), waiting for any holder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def lock_path(root: str | Path | None = None) -> Path:
    return Path(root or Path.cwd()).resolve() / PIPELINE_LOCK


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.with_suffix(".owner").read_text())
    except (OSError, json.JSONDecodeError):
        return "another process"
    return f"{info.get('what', 'a pipeline')} (pid {info.get('pid')} on {info.get('host')}, since {info.get('since')})"


@contextlib.contextmanager
def pipeline_lock(root: str | Path | None = None, *, wait_s: float = 0.0, what: str = "retrain") -> Iterator[Path]:
    """Hold the pipeline lock; wait up to ``wait_s`` seconds, then raise PipelineBusyError."""
    path = lock_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")  # noqa: SIM115 - closed in finally
    deadline = time.monotonic() + max(0.0, wait_s)
    try:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise PipelineBusyError(
                        f"the pipeline is busy: {_holder(path)} holds {path}. Wait for it to finish "
                        "(or pass a longer wait), then run again"
                    ) from None
                time.sleep(0.5)
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
                 "since": datetime.now(UTC).isoformat(timespec="seconds")}
        path.with_suffix(".owner").write_text(json.dumps(owner))
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                path.with_suffix(".owner").unlink()
            fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        fh.close()
