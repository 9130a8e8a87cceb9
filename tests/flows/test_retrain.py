"""End to end: the retrain flow on a real git + DVC repo, real MLflow store, Prefect harness."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import entroad.evaluation.engine
import entroad.tracking.training
from entroad.errors import PipelineBusyError
from entroad.tracking import registry
from entroad.tracking import store as mlstore
from flows.common import read_params
from flows.retrain import retrain_flow
from tests.flows.conftest import make_pipeline_repo

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def repo(tmp_path_factory, mlflow_template, prefect_harness):
    return make_pipeline_repo(tmp_path_factory.mktemp("pipeline") / "repo", mlflow_template)


def state(params):
    client = mlstore.client(params)
    name = params.tracking.registered_model
    return [str(v.version) for v in registry.versions(client, name)], registry.aliases_of(client, name)


def with_metrics(value: float):
    """Wrap entroad.evaluation.engine.evaluate so every dataset metric of the new model reads ``value``:
    a candidate of known quality (deliberately worse: 0, deliberately better: 100)."""
    real = entroad.evaluation.engine.evaluate

    def fake_quality(*args, **kwargs):
        result = real(*args, **kwargs)
        result.datasets = [
            dataclasses.replace(d, metrics={k: (None if v is None else value) for k, v in d.metrics.items()})
            for d in result.datasets
        ]
        return result

    return fake_quality


def test_retrain_twice_second_run_skips_work(repo, in_dir):
    in_dir(repo)
    first = retrain_flow("params.yaml")
    params = read_params("params.yaml")
    assert first["verdict"] == "first_champion" and first["champion"] == first["version"] == "1"
    assert first["skipped"] == []
    assert first["random_init"] is True and first["backbone"] == "entroad-tiny"
    assert Path(first["report"]).is_file()
    assert all(v.endswith(".dir") for v in first["data"].values()), first["data"]  # DVC versions
    assert state(params) == (["1"], {"champion": "1", "challenger": "1"})
    run = mlstore.client(params).get_run(first["eval_run_id"])
    assert run.data.tags["data_version.surfaces"] == first["data"]["surfaces"]
    assert run.data.tags["random_init_backbone"] == "true"
    assert run.data.tags["git_commit"] != "unknown"

    second = retrain_flow("params.yaml")
    skipped = " | ".join(second["skipped"])
    for item in ("ingest textures", "ingest surfaces", "ingest ct-mr", "training (cache hit", "MLflow training run",
                 "evaluation of surfaces", "evaluation of ct-mr", "MLflow evaluation run", "registration (v1",
                 "promotion gate"):
        assert item in skipped, (item, second["skipped"])
    assert (second["version"], second["champion"], second["train_run_id"]) == ("1", "1", first["train_run_id"])
    assert state(params) == (["1"], {"champion": "1", "challenger": "1"})


def test_worse_candidate_is_not_promoted_better_one_is(repo, in_dir, monkeypatch):
    in_dir(repo)
    params = read_params("params.yaml")
    before, _ = state(params)
    champion = state(params)[1]["champion"]

    monkeypatch.setattr(entroad.evaluation.engine, "evaluate", with_metrics(0.0))
    worse = retrain_flow("params.yaml", ["train.seed=2"])
    assert worse["verdict"] == "rejected" and worse["champion"] == champion
    versions, aliases = state(params)
    assert aliases == {"champion": champion, "challenger": worse["version"]}
    assert "regresses" in worse["decision_markdown"]

    monkeypatch.setattr(entroad.evaluation.engine, "evaluate", with_metrics(100.0))
    better = retrain_flow("params.yaml", ["train.seed=3"])
    assert better["verdict"] == "promoted"
    versions, aliases = state(params)
    assert aliases == {"champion": better["version"], "challenger": better["version"]}
    assert len(versions) == len(before) + 2
    mv = mlstore.client(params).get_model_version("entroad", better["version"])
    assert mv.tags["promotion.compared_to"] == f"v{champion}" and "promoted" in mv.description


def test_failed_training_or_evaluation_registers_nothing(repo, in_dir, monkeypatch):
    in_dir(repo)
    params = read_params("params.yaml")
    before = state(params)

    def broken_train(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    with monkeypatch.context() as m:
        m.setattr(entroad.tracking.training, "train", broken_train)  # the name the pipeline step calls
        with pytest.raises(RuntimeError, match="simulated"):
            retrain_flow("params.yaml", ["train.seed=4"])
    assert state(params) == before

    def broken_eval(*args, **kwargs):
        raise RuntimeError("evaluation crashed (simulated)")

    with monkeypatch.context() as m:
        m.setattr(entroad.evaluation.engine, "evaluate", broken_eval)
        with pytest.raises(RuntimeError, match="simulated"):
            retrain_flow("params.yaml", ["train.seed=5"])
    assert state(params) == before  # the trained model is logged as a run, but never registered or aliased
    logged = list((repo / "runs").glob("textures-*/mlflow-run.json"))
    assert any(json.loads(p.read_text())["run_id"] for p in logged)


def test_second_retrain_at_once_fails_clearly(repo, in_dir):
    from entroad.locks import pipeline_lock

    in_dir(repo)
    with pipeline_lock(repo, what="retrain flow"):
        with pytest.raises(PipelineBusyError, match="busy"):
            retrain_flow("params.yaml")
