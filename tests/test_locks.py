"""Locks: one pipeline at a time (a second retrain/promotion fails clearly), one DVC command per repo."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from entroad.errors import PipelineBusyError
from entroad.locks import file_lock, lock_path, pipeline_lock
from entroad.tracking.store import EMBEDDED_DIR

HOLD = """
import sys, time
from entroad.locks import pipeline_lock
with pipeline_lock(sys.argv[1], what="retrain flow"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_second_process_is_refused_with_the_holder_named(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        with pytest.raises(PipelineBusyError) as err:
            with pipeline_lock(tmp_path, wait_s=1.0, what="promotion"):
                pass
        assert time.monotonic() - t0 >= 0.9
        msg = str(err.value)
        assert "busy" in msg and "retrain flow" in msg and f"pid {holder.pid}" in msg
    finally:
        holder.kill()
        holder.wait()
    with pipeline_lock(tmp_path):  # released when the holder dies, even without cleanup
        assert lock_path(tmp_path).is_file()


def test_lock_is_not_reentrant_across_threads(tmp_path):
    import threading

    errors = []
    with pipeline_lock(tmp_path):
        def other():
            try:
                with pipeline_lock(tmp_path):
                    pass
            except PipelineBusyError as e:
                errors.append(e)

        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert len(errors) == 1


def test_pipeline_lock_lives_beside_the_embedded_store(tmp_path):
    assert lock_path(tmp_path) == tmp_path.resolve() / EMBEDDED_DIR / ".pipeline.lock"


def test_file_lock_makes_a_second_holder_wait(tmp_path):
    import threading

    path = tmp_path / "sub" / "x.lock"
    order: list[str] = []
    with file_lock(path):
        t = threading.Thread(target=lambda: file_lock_and_note(path, order))
        t.start()
        time.sleep(0.3)
        order.append("first done")
    t.join()
    assert order == ["first done", "second"]


def file_lock_and_note(path, order):
    with file_lock(path):
        order.append("second")
