"""Prefect server + process work pool + worker: ``python -m flows.deploy`` registers the
deployments; a triggered retrain runs on the worker and registers a version with its
lineage on the MLflow server; a one-minute cron makes the scheduler start a run by itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from entroad.stack import access
from tests.flows.conftest import DVC_YAML, GIT, pipeline_params
from tests.stack.conftest import ROOT, planted_passwords

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@pytest.fixture(scope="module")
def team_repo(prefect_stack, tmp_path_factory):
    """A git + DVC project with the flows, tiny data, and its DVC remote on the stack's S3."""
    root = Path(tmp_path_factory.mktemp("team")) / "repo"
    root.mkdir()
    params = pipeline_params(root.parent / "unused")
    params["data"]["remote"] = f"s3://{prefect_stack.bucket}/pipeline-dvc"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "dvc.yaml").write_text(DVC_YAML)
    shutil.copytree(ROOT / "flows", root / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    (root / ".gitignore").write_text("/runs/\n/datasets/raw/\n/datasets/.cache/\n/datasets/.deid_salt\n/.prefect/\n")
    (root / ".dvcignore").write_text("/datasets/raw/\n")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True, env=env)
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "pipeline"], cwd=root, check=True)
    return root


@pytest.fixture
def as_promoter(prefect_stack, monkeypatch):
    for k, v in prefect_stack.client_env(access.PROMOTER).items():
        monkeypatch.setenv(k, v)
    return prefect_stack


def _deploy(repo: Path, pool: str, *extra: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "flows.deploy", "--pool", pool, *extra], cwd=repo,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def _wait_run(flow_run_id, timeout: float) -> str:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.type.value in TERMINAL:
                return run.state.type.value
            time.sleep(5)
    raise AssertionError(f"flow run {flow_run_id} did not finish within {timeout:.0f} s")


def _versions(stack):
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=stack.mlflow_url, registry_uri=stack.mlflow_url)
    return c, c.search_model_versions(f"name = '{access.candidates_model(stack.registered_model)}'")


def test_triggered_retrain_runs_on_the_worker_and_registers_with_lineage(as_promoter, team_repo):
    from prefect.deployments import run_deployment

    out = _deploy(team_repo, as_promoter.pool)
    assert out.count("deployed ") == 3 and "entroad-retrain/entroad-retrain" in out
    _, before = _versions(as_promoter)
    run = run_deployment("entroad-retrain/entroad-retrain", timeout=0)
    assert _wait_run(run.id, 1200) == "COMPLETED", (as_promoter.path / "logs" / "worker-1.log").read_text()[-3000:]
    client, after = _versions(as_promoter)
    new = [v for v in after if v.version not in {b.version for b in before}]
    assert len(new) == 1
    tags = new[0].tags
    assert tags["git_commit"] and any(k.startswith("data_version.") for k in tags), tags
    assert client.get_model_version_by_alias(as_promoter.registered_model, "champion").run_id == new[0].run_id
    text = (as_promoter.path / "logs" / "worker-1.log").read_text(errors="replace") + out
    assert not [pw for pw in planted_passwords(as_promoter) if pw in text]


def test_worker_killed_mid_retrain_then_rerun_resumes_and_registers_once(as_promoter, team_repo):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from entroad.stack import launch

    changed = {"overrides": ["train.epochs=2"]}  # new work: a second training with other params
    _, before = _versions(as_promoter)
    run = run_deployment("entroad-retrain/entroad-retrain", parameters=changed, timeout=0)
    deadline, running_since = time.monotonic() + 600, None
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(run.id).state
            if state and state.is_final():
                break
            if state and state.is_running():
                running_since = running_since or time.monotonic()
                if time.monotonic() - running_since > 15:  # past ingest, inside training or evaluation
                    break
            time.sleep(1)
        killed_state = client.read_flow_run(run.id).state.type.value
    launch.restart(as_promoter, "worker-1", kill=True)  # SIGKILL worker and its flow run, then a new worker
    assert killed_state not in {"COMPLETED"}, "the run finished before the worker could be killed"
    rerun = run_deployment("entroad-retrain/entroad-retrain", parameters=changed, timeout=0)
    assert _wait_run(rerun.id, 1200) == "COMPLETED", (as_promoter.path / "logs" / "worker-1.log").read_text()[-3000:]
    _, after = _versions(as_promoter)
    assert len(after) == len(before) + 1  # exactly one new version, whatever the killed run had done


def test_one_minute_cron_starts_a_run_by_itself(as_promoter, team_repo):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, FlowRunFilter

    _deploy(team_repo, as_promoter.pool, "--cron", "* * * * *")
    _, before = _versions(as_promoter)
    deadline = time.monotonic() + 300
    started = None
    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name("entroad-retrain/entroad-retrain")
        while started is None and time.monotonic() < deadline:
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id={"any_": [dep.id]}),
                                         flow_run_filter=FlowRunFilter())
            auto = [r for r in runs if r.auto_scheduled and r.state and r.state.type.value != "SCHEDULED"]
            started = auto[0] if auto else None
            time.sleep(5)
        assert started is not None, "the scheduler started no run of the one-minute cron within 5 minutes"
        client.pause_deployment(dep.id)  # no more runs after this one
    assert _wait_run(started.id, 900) == "COMPLETED"
    _, after = _versions(as_promoter)
    assert len(after) == len(before)  # unchanged data + params: the re-run registers nothing new
