"""Ingest's local worker processes die with their parent: a killed ingest (SIGKILL, as when a
Prefect worker and its flow run are killed) must not leave forked workers holding the
pipeline lock they inherited."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from entroad.locks import pipeline_lock

SCRIPT = """
import sys, time
from entroad.locks import pipeline_lock
from entroad.data.dicom.workers import Processes

with pipeline_lock(sys.argv[1], what="ingest"):
    pool = Processes(2)
    assert list(pool.map(abs, [-1, -2, -3, -4])) == [1, 2, 3, 4]  # the workers exist, now idle
    print(" ".join(str(pid) for pid in pool.pool._processes), flush=True)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))  # a zombie is gone


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_killed_ingest_leaves_no_worker_holding_the_pipeline_lock(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(p) for p in workers)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers), "forked ingest workers outlived their killed parent"
        with pipeline_lock(tmp_path, wait_s=5, what="rerun"):  # free again
            pass
    finally:
        proc.kill()
        for pid in workers if "workers" in locals() else []:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
