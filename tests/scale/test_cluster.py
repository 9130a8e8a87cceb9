"""The ``--dask`` spec and the fast failure on an unreachable scheduler (real Dask, no mocks)."""

import socket
import sys
import time

import pytest

from entroad.cluster import CONNECT_TIMEOUT_S, DaskSpec, dask_client, parse_dask
from entroad.errors import InputError


def test_specs_parse():
    assert parse_dask("local:3") == DaskSpec(workers=3)
    assert parse_dask("local").workers >= 1
    assert parse_dask("tcp://sched:8786") == DaskSpec(address="tcp://sched:8786")
    assert parse_dask("sched:8786") == DaskSpec(address="tcp://sched:8786")
    for bad in ("", "local:0", "local:x", "sched:port", "sched", "tcp://"):
        with pytest.raises(InputError):
            parse_dask(bad)


def test_unreachable_scheduler_fails_within_seconds():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(InputError, match="cannot reach the Dask scheduler.*dask scheduler"):
        with dask_client(f"127.0.0.1:{port}"):
            pass
    assert time.monotonic() - t0 < 3 * CONNECT_TIMEOUT_S


def test_local_cluster_runs_work():
    with dask_client("local:1") as client:
        assert client.submit(sum, [1, 2, 3]).result() == 6


def _faults_per_mib() -> float:
    """Minor page faults per 1 MiB array allocated, filled and freed (in this process)."""
    import resource

    import numpy as np

    np.ones(1 << 20, np.uint8)  # warm-up: the heap may grow once
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        np.ones(1 << 20, np.uint8)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_workers_reuse_freed_memory():
    """Dask's nanny makes every slice-sized array a fresh mmap (each page a fault); the workers
    of a dask_client reuse freed heap memory instead."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as plain:
            before = list(plain.run(_faults_per_mib).values())[0]
    with dask_client("local:1") as client:
        after = list(client.run(_faults_per_mib).values())[0]
    assert before >= 128, before  # 256 pages of 4 KiB each time: the nanny's setting is in force
    assert after < 16, after
