"""Training/evaluation runs in a real MLflow sqlite store: lineage, params, metrics, store resolution."""

from __future__ import annotations

import json
import socket
import time

import pytest

from entroad.errors import TrackingError
from entroad.tracking import lineage, runs
from entroad.tracking import store as mlstore
from tests.tracking.conftest import TARGETS, git_repo


def test_embedded_store_is_resolved_in_the_project(store, params, monkeypatch):
    target = mlstore.resolve(params)
    assert target.embedded
    assert target.uri == f"sqlite:///{store / 'mlflow' / 'mlflow.db'}"
    assert target.artifact_location == str(store / "mlflow" / "artifacts")
    assert "mlflow ui --backend-store-uri sqlite:///" in mlstore.ui_command(params)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/db.sqlite")
    assert mlstore.resolve(params).source == "MLFLOW_TRACKING_URI"


def test_store_of_another_root_is_not_hidden_by_our_own_export(store, params, tmp_path_factory):
    import os

    mlstore.connect(params)  # mlflow exports MLFLOW_TRACKING_URI for child processes
    assert os.environ["MLFLOW_TRACKING_URI"].endswith(str(store / "mlflow" / "mlflow.db"))
    other = tmp_path_factory.mktemp("other-root")
    t = mlstore.resolve(params, other)
    assert t.source == "embedded" and t.uri == f"sqlite:///{other / 'mlflow' / 'mlflow.db'}"


def test_params_uri_and_env_precedence(tmp_path, params, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    p = params.model_copy(update={"tracking": params.tracking.model_copy(update={"uri": "http://mlflow.example:5000"})})
    t = mlstore.resolve(p, tmp_path)
    assert (t.source, t.uri, t.artifact_location) == ("tracking.uri", "http://mlflow.example:5000", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://other:5000")
    assert mlstore.resolve(p, tmp_path).uri == "http://other:5000"
    assert "open http://other:5000" in mlstore.ui_command(p, tmp_path)


def test_unreachable_server_fails_fast_with_advice(params, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    t0 = time.monotonic()
    with pytest.raises(TrackingError) as err:
        mlstore.client(params)
    assert time.monotonic() - t0 < 10
    msg = str(err.value)
    assert "unreachable" in msg and "MLFLOW_TRACKING_URI" in msg and "mlflow server" in msg


def test_training_run_carries_lineage_params_and_model(store, params, trained):
    sha = git_repo(store)
    run_id = runs.log_training_run(params, trained)
    run = store_client(params).get_run(run_id)
    tags = run.data.tags
    assert tags[lineage.TAG_KIND] == "train"
    assert tags["git_commit"] == sha
    assert tags["git_dirty"] in {"true", "false"}
    assert tags[lineage.TAG_RANDOM_INIT] == "true"
    assert tags["backbone.name"] == "entroad-tiny"
    assert tags["backbone.weights_sha256"] == trained.backbone.weights_sha256
    assert tags[f"{lineage.DATA_VERSION_PREFIX}aux"] == trained.data_version
    assert run.data.params["model.entropy"] == params.model.entropy
    assert run.data.params["train.epochs"] == "1"
    assert "train/loss" in run.data.metrics
    assert tags[lineage.TAG_MODEL_URI].startswith("models:/m-")
    artifacts = {a.path for a in store_client(params).list_artifacts(run_id)}
    assert {"params.json", "history.jsonl"} <= artifacts


def test_evaluation_run_is_nested_and_named_per_dataset(store, params, trained, evaluated):
    result, out = evaluated
    train_id = runs.log_training_run(params, trained)
    eval_id = runs.log_evaluation_run(params, result, train_run_id=train_id, out_dir=out)
    c = store_client(params)
    run = c.get_run(eval_id)
    assert run.data.tags["mlflow.parentRunId"] == train_id
    assert run.data.tags[lineage.TAG_RANDOM_INIT] == "true"
    for name in TARGETS:
        assert run.data.tags[f"{lineage.DATA_VERSION_PREFIX}{name}"] == result.dataset(name).data_version
        assert run.data.metrics[f"{name}/image_auroc"] == pytest.approx(result.dataset(name).metrics["image_auroc"])
    cls = result.dataset(TARGETS[0]).classes[0]
    assert f"{TARGETS[0]}/{cls.cls}/image_auroc" in run.data.metrics
    assert "mean/image_auroc" in run.data.metrics
    summary = runs.evaluation_of_run(run)
    assert sorted(summary["datasets"]) == sorted(TARGETS) and summary["random_init"]
    assert [r.info.run_id for r in runs.find_evaluations(c, train_id)] == [eval_id]
    files = {a.path for a in c.list_artifacts(eval_id, "evaluation")}
    assert "evaluation/report.html" in files and "evaluation/summary.json" in files
    import mlflow

    local = mlflow.artifacts.download_artifacts(run_id=eval_id, artifact_path="evaluation/summary.json",
                                                dst_path=str(store / "dl"))
    summary_json = json.loads(open(local).read())
    assert summary_json["model"]["random_init"] is True


def store_client(params):
    return mlstore.client(params)
