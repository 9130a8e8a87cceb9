"""The ``--dask`` spec and the fast failure on an unreachable scheduler (real Dask, no mocks)."""

import socket
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
