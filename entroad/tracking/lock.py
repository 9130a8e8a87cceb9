"""One pipeline at a time: a file lock around retraining and promotion.

Two retrain runs (or a retrain and ``entroad promote``) on the same checkout would race on
the training folder and on the registry aliases. The lock file lives next to the embedded
store (``mlflow/.pipeline.lock``); the holder's pid, host, start time and purpose are written
beside it so the second caller can say who is running. It is not re-entrant: code that already
holds it (the retrain flow) tells the functions it calls so (``run_gate(hold_lock=False)``).
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
from entroad.tracking.store import EMBEDDED_DIR

LOCK_FILE = ".pipeline.lock"


def lock_path(root: str | Path | None = None) -> Path:
    return Path(root or Path.cwd()).resolve() / EMBEDDED_DIR / LOCK_FILE


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
