"""Site prediction on Dask (a real LocalCluster with 2 worker processes, no mocks): the serial
run's rows, unreadable files inside shards, resuming by shard, and a worker killed mid-job."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import threading
import time

import dask
import pytest
from distributed import Client, LocalCluster
from typer.testing import CliRunner

from entroad.cli import app
from entroad.errors import InputError
from entroad.predict import predict
from entroad.predict.distributed import models_loaded
from entroad.predict.shards import SHARDS_DIR
from tests.evaluation.conftest import checkpoint, data_root, eval_params  # noqa: F401 (fixtures)

SHARD = 4
THRESHOLD = 0.5


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def cluster():
    # the scheduler address is passed as --dask: the path of an existing cluster
    with dask.config.set({"distributed.worker.daemon": False}):
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
            yield c


@pytest.fixture(scope="module")
def site(data_root, tmp_path_factory):  # noqa: F811
    """22 images in two folders, an unreadable file and a truncated PNG that land in different shards."""
    folder = tmp_path_factory.mktemp("site")
    (folder / "line2").mkdir()
    for i, p in enumerate(sorted(data_root.glob("*/images/**/*.png"))):
        shutil.copy(p, (folder / "line2" if i % 3 == 0 else folder) / f"part{i:02d}.png")
    (folder / "line2" / "broken.png").write_text("not an image")
    png = (folder / "part05.png").read_bytes()
    (folder / "part11x.png").write_bytes(png[: len(png) // 2])
    return folder


def _predict(ckpt, site, out, **kw):
    return predict(ckpt, site, out, params=eval_params(), threshold=THRESHOLD, device="cpu", progress=False, **kw)


@pytest.fixture(scope="module")
def serial(checkpoint, site, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("serial")
    _predict(checkpoint, site, out)
    return out


@pytest.fixture(scope="module")
def distributed_run(checkpoint, site, cluster, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("dask")
    return _predict(checkpoint, site, out, dask=cluster.scheduler_address, shard_size=SHARD)


def _assert_same_rows(got, want):
    assert [r["id"] for r in got] == [r["id"] for r in want]  # same ids, same order, no duplicate
    assert list(got[0]) == list(want[0])  # same columns
    for g, w in zip(got, want, strict=True):
        assert float(g["score"]) == pytest.approx(float(w["score"]), abs=1.01e-6)  # one unit of the 6th decimal
        assert {k: g[k] for k in g if k != "score"} == {k: w[k] for k in w if k != "score"}


def test_two_workers_give_the_serial_rows_and_failures(distributed_run, serial, cluster):
    res, out = distributed_run, distributed_run.out_dir
    _assert_same_rows(_rows(out / "scores.csv"), _rows(serial / "scores.csv"))
    assert res.n_scored == 22 and res.n_skipped == 0 and res.n_total == 24
    assert res.shards_run == res.shards_total == 6
    fails = _rows(out / "failures.csv")
    assert fails == _rows(serial / "failures.csv")
    assert [f["id"] for f in fails] == ["line2/broken.png", "part11x.png"]
    assert len(list((out / SHARDS_DIR).glob("shard-*.json"))) == 6
    for r in _rows(out / "scores.csv"):
        assert (out / r["overlay"]).is_file()
    with Client(cluster) as client:  # each worker loaded the model once, not once per shard
        loads = client.run(models_loaded)
    assert sorted(loads.values())[-1] == 1 and set(loads.values()) <= {0, 1}


def test_rerun_scores_only_missing_shards(distributed_run, cluster, checkpoint, site, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    shutil.copytree(distributed_run.out_dir, out)
    before = (out / "scores.csv").read_bytes()
    shards = sorted((out / SHARDS_DIR).glob("shard-*.json"))
    lost = [shards[1], shards[4]]
    lost_rows = sum(len(json.loads(p.read_text())["rows"]) for p in lost)
    for p in lost:
        p.unlink()
    (out / "scores.csv").unlink()  # as if the job stopped before the merge
    res = _predict(checkpoint, site, out, dask=cluster.scheduler_address, shard_size=SHARD)
    assert (res.shards_run, res.shards_total) == (2, 6)
    assert res.n_scored == lost_rows and res.n_skipped == 22 - lost_rows
    assert (out / "scores.csv").read_bytes() == before
    again = CliRunner().invoke(app, [  # the command line, with nothing left to score
        "predict", "-m", str(checkpoint), "-i", str(site), "-o", str(out), "--threshold", str(THRESHOLD),
        "--device", "cpu", "--dask", cluster.scheduler_address, "--shard-size", str(SHARD),
    ])
    assert again.exit_code == 0, again.output
    assert "scored 0 image(s), 22 already done (0 of 6 shards run)" in again.output
    assert (out / "scores.csv").read_bytes() == before
    # shards scored with another threshold are never mixed in
    (out / "scores.csv").unlink()
    with pytest.raises(InputError, match="different model or threshold"):
        predict(checkpoint, site, out, params=eval_params(), threshold=0.4, device="cpu", progress=False,
                dask=cluster.scheduler_address, shard_size=SHARD)


def test_worker_killed_mid_job_loses_and_duplicates_nothing(checkpoint, site, serial, cluster, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    box: dict = {}

    def run():
        try:
            box["res"] = _predict(checkpoint, site, out, dask=cluster.scheduler_address, shard_size=1, overlays=False)
        except BaseException as e:  # re-raised below, in the test's thread
            box["err"] = e

    job = threading.Thread(target=run)
    job.start()
    with Client(cluster) as client:
        deadline = time.monotonic() + 120
        while not any((out / SHARDS_DIR).glob("shard-*.json")):
            assert job.is_alive() and time.monotonic() < deadline, "the job ended before its first shard was written"
            time.sleep(0.05)
        busy = [addr for addr, keys in client.processing().items() if keys]
        assert busy and job.is_alive(), "no shard was running when the worker was to be killed: use more inputs"
        pids = client.run(os.getpid)
        os.kill(pids[busy[0]], signal.SIGKILL)
        job.join(timeout=240)
    assert not job.is_alive()
    if "err" in box:
        raise box["err"]
    res = box["res"]
    assert res.shards_run == res.shards_total == 24 and res.n_scored == 22
    want = _rows(serial / "scores.csv")
    for r in want:
        r["overlay"] = ""  # this run writes no overlays
    _assert_same_rows(_rows(out / "scores.csv"), want)
    assert [f["id"] for f in _rows(out / "failures.csv")] == ["line2/broken.png", "part11x.png"]
