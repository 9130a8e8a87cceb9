"""Faults against the real servers: unreachable servers give a clear, bounded error naming the
server and the setting; a PostgreSQL restart loses nothing; concurrent evaluations from two
processes writing to the same MLflow server do not mix."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from entroad.stack import access
from entroad.stack.processes import free_port
from tests.stack.conftest import ROOT

ENTROAD = str(Path(sys.executable).parent / "entroad")


def _timed(cmd: list[str], env: dict[str, str], cwd: Path, limit: float = 120) -> tuple[int, str, float]:
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=limit)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - t0


def test_unreachable_mlflow_and_prefect_fail_fast_naming_them(stack, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, **stack.client_env(access.VIEWER), "MLFLOW_TRACKING_URI": dead}
    rc, out, took = _timed([ENTROAD, "models", "--params", str(ROOT / "params.yaml")], env, tmp_path)
    assert rc != 0 and took < 60 and dead in out and "MLFLOW_TRACKING_URI" in out and "Traceback" not in out, out

    env = {**os.environ, **stack.client_env(access.PROMOTER), "PREFECT_API_URL": dead + "/api"}
    rc, out, took = _timed([sys.executable, "-m", "flows.deploy", "--pool", "entroad"], env, ROOT)
    assert rc != 0 and took < 60 and "PREFECT_API_URL" in out and dead in out and "Traceback" not in out, out


def test_wrong_password_is_named_not_retried(stack, tmp_path):
    env = {**os.environ, **stack.client_env(access.TRAINER), "MLFLOW_TRACKING_PASSWORD": "not-the-password"}
    rc, out, took = _timed([ENTROAD, "models", "--params", str(ROOT / "params.yaml")], env, tmp_path)
    assert rc != 0 and took < 60 and "refused the credentials" in out and "MLFLOW_TRACKING_PASSWORD" in out, out
    assert "not-the-password" not in out


def test_postgres_down_is_named_then_restart_loses_nothing(stack, as_user, tmp_path):
    client = as_user(access.TRAINER)
    exp = client.get_experiment_by_name(stack.experiment)
    run = client.create_run(exp.experiment_id, run_name="before-restart")
    client.log_metric(run.info.run_id, "m", 1.0)
    client.set_terminated(run.info.run_id)
    before = {r.info.run_id for r in client.search_runs([exp.experiment_id], max_results=1000)}

    pg = stack.postgres()
    pg.stop()
    try:
        env = {**os.environ, **stack.client_env(access.VIEWER)}
        rc, out, took = _timed([ENTROAD, "models", "--params", str(ROOT / "params.yaml")], env, tmp_path, limit=180)
        assert rc != 0 and took < 120 and "backend store" in out and "PostgreSQL" in out and "Traceback" not in out, out
    finally:
        pg.start()

    after = {r.info.run_id for r in client.search_runs([exp.experiment_id], max_results=1000)}
    assert before <= after
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
    again = client.create_run(exp.experiment_id, run_name="after-restart")  # the server reconnects by itself
    client.set_terminated(again.info.run_id)


_WRITER = """
import sys, mlflow
from mlflow import MlflowClient
tag, n = sys.argv[1], int(sys.argv[2])
c = MlflowClient()
exp = c.get_experiment_by_name(sys.argv[3]).experiment_id
with mlflow.start_run(experiment_id=exp, run_name="concurrent-" + tag) as run:
    for i in range(n):
        mlflow.log_metric("value", float(i), step=i)
        mlflow.set_tag("writer", tag)
    mlflow.log_dict({"writer": tag, "n": n}, "summary.json")
print(run.info.run_id)
"""


def test_two_writers_at_once_do_not_mix(stack, as_user, tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    env = {**os.environ, **stack.client_env(access.TRAINER)}
    procs = {tag: subprocess.Popen([sys.executable, str(script), tag, "40", stack.experiment], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for tag in ("a", "b")}
    ids = {}
    for tag, p in procs.items():
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
        ids[tag] = out.strip().splitlines()[-1]
    client = as_user(access.VIEWER)
    for tag, run_id in ids.items():
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.tags["writer"] == tag
        history = client.get_metric_history(run_id, "value")
        assert sorted(m.step for m in history) == list(range(40))
        summary = yaml.safe_load(Path(client.download_artifacts(run_id, "summary.json", str(tmp_path / tag))).read_text())
        assert summary == {"writer": tag, "n": 40}


def test_s3_killed_during_dvc_push_retry_succeeds_and_nothing_is_lost(stack, tmp_path, monkeypatch):
    from entroad.config import load_params
    from entroad.data.ingest import ensure_samples, ingest_dataset
    from entroad.data.versioning import data_version
    from entroad.stack import launch
    from tests.data.ingest_helpers import make_dvc_project
    from tests.stack.test_dvc import GIT, PARAMS

    prefix = "dvc-restart"
    text = PARAMS.format(remote=f"s3://{stack.bucket}/{prefix}").replace("n_train_good: 1", "n_train_good: 24")
    env = {**os.environ, **stack.s3().env(), "AWS_ENDPOINT_URL_S3": stack.s3_url, "DVC_NO_ANALYTICS": "1",
           "ENTROAD_DEID_SALT": "stack-fault-salt"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    proj = make_dvc_project(tmp_path / "proj", text)
    monkeypatch.chdir(proj)
    params = load_params(proj / "params.yaml")
    ensure_samples(params)
    version = ingest_dataset(params, "tex", progress=False).version

    push = subprocess.Popen([ENTROAD, "data", "push"], cwd=proj, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    s3 = stack.s3().client()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and push.poll() is None:
        if s3.list_objects_v2(Bucket=stack.bucket, Prefix=prefix + "/").get("KeyCount", 0):
            break
        time.sleep(0.2)
    mid_push = push.poll() is None
    launch.restart(stack, "s3", kill=True)  # a crash: SIGKILL, then the same port again
    first = push.communicate(timeout=600)[0]
    retry = subprocess.run([ENTROAD, "data", "push"], cwd=proj, env=env, capture_output=True, text=True, timeout=600)
    assert retry.returncode == 0, retry.stdout + retry.stderr

    subprocess.run(["git", "add", "-A"], cwd=proj, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "tex"], cwd=proj, check=True)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(proj), str(clone)], check=True)
    pulled = subprocess.run([ENTROAD, "data", "pull", "tex"], cwd=clone, env=env, capture_output=True, text=True,
                            timeout=600)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert data_version(clone / "datasets" / "processed" / "tex") == version
    print(f"S3 killed {'during' if mid_push else 'after'} the first push (exit {push.returncode}): {first[-300:]}")


def test_s3_killed_mid_write_of_its_recording_restarts_with_what_was_acknowledged(stack):
    """A crash can cut moto's last recorded request short; the restart drops that line (its
    request was never answered) instead of failing to restore everything."""
    from entroad.stack import launch

    s3 = stack.s3().client()
    s3.put_object(Bucket=stack.bucket, Key="recording-test/kept.txt", Body=b"acknowledged")
    recording = stack.path / "s3-recording.jsonl"
    with open(recording, "a") as f:  # what a SIGKILL during json.dumps(entry) + "\n" leaves
        f.write('{"module": "s3", "method": "PUT", "path": "/entroad/recording-test/cut.txt", "body": "aGVs')
    launch.restart(stack, "s3", kill=True)
    s3 = stack.s3().client()
    assert s3.get_object(Bucket=stack.bucket, Key="recording-test/kept.txt")["Body"].read() == b"acknowledged"
    assert recording.read_bytes().endswith(b"\n")
    assert b"cut.txt" not in recording.read_bytes()
