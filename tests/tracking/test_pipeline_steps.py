"""The pipeline's library steps on a real store: gate idempotency, the training run logged
once, and MLflow models downloaded once into the model cache."""

from __future__ import annotations

import json
import shutil

import pytest

from entroad.errors import CheckpointError
from entroad.model_source import cached_checkpoint
from entroad.tracking import registry, runs
from entroad.tracking import store as mlstore
from entroad.tracking.gate import gate_once, register_candidate
from entroad.tracking.training import MLFLOW_RUN_FILE, log_training_once, plan_training
from tests.tracking.conftest import shifted

NAME = "entroad"


def candidate(params, trained, result) -> str:
    train_id = runs.log_training_run(params, trained)
    eval_id = runs.log_evaluation_run(params, result, train_run_id=train_id)
    mv, _ = register_candidate(params, train_id, eval_id)
    return str(mv.version)


def test_gate_once_reuses_a_decision_until_the_champion_changes(store, params, trained, evaluated, tmp_path):
    result, _ = evaluated
    v1 = candidate(params, trained, result)
    first = gate_once(params, v1, tmp_path / "re")
    assert (first["verdict"], first["reused"], first["champion"]) == ("first_champion", False, v1)
    again = gate_once(params, v1, tmp_path / "re")
    assert again["reused"] and again["verdict"] == "first_champion" and again["champion"] == v1

    worse = candidate(params, trained, shifted(result, -5.0))
    decided = gate_once(params, worse, tmp_path / "re")
    assert decided["verdict"] == "rejected" and not decided["reused"] and decided["rows"]
    assert gate_once(params, worse, tmp_path / "re")["reused"]

    better = candidate(params, trained, shifted(result, +5.0))
    assert gate_once(params, better, tmp_path / "re")["champion"] == better
    # the champion it was judged against is gone: the worse version is decided again
    redo = gate_once(params, worse, tmp_path / "re")
    assert not redo["reused"] and redo["verdict"] == "rejected" and redo["champion"] == better
    tags = registry.get_version(mlstore.client(params), NAME, worse).tags
    assert tags["promotion.compared_to"] == f"v{better}"


def test_training_run_is_logged_once_per_store(store, params, trained, tmp_path):
    folder = tmp_path / "runs" / "aux-key"
    shutil.copytree(trained.out_dir, folder)
    first = log_training_once(params, folder, "key")
    assert not first["reused"] and first["model_uri"].startswith("models:/")
    marker = json.loads((folder / MLFLOW_RUN_FILE).read_text())
    assert marker["run_id"] == first["run_id"]
    assert mlstore.client(params).get_run(first["run_id"]).data.tags["entroad.train_key"] == "key"
    again = log_training_once(params, folder, "key")
    assert again == {"run_id": first["run_id"], "model_uri": first["model_uri"], "reused": True}
    # a run deleted from the store is logged again rather than trusted from the marker
    mlstore.client(params).delete_run(first["run_id"])
    third = log_training_once(params, folder, "key")
    assert not third["reused"] and third["run_id"] != first["run_id"]


def test_plan_training_names_the_folder_by_content_key(params):
    key, folder, finished = plan_training(params, "content:abc")
    assert folder.as_posix() == f"runs/{params.train.dataset}-{key}" and not finished
    assert plan_training(params, "content:other")[0] != key


def test_cached_checkpoint_downloads_an_mlflow_model_once(store, params, trained, tmp_path):
    train_id = runs.log_training_run(params, trained)
    uri = runs.model_uri_of(train_id)
    cache = tmp_path / "models"
    local = cached_checkpoint(uri, params, cache)
    assert (local / "weights.safetensors").is_file() and local.is_relative_to(cache)
    assert not list(cache.glob("*.part"))
    stamp = (local / "config.json").stat().st_mtime_ns
    assert cached_checkpoint(uri, params, cache) == local
    assert (local / "config.json").stat().st_mtime_ns == stamp  # not downloaded again
    assert cached_checkpoint(str(trained.model_dir), params, cache) == trained.model_dir
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        cached_checkpoint(str(tmp_path / "missing"), params, cache)
    with pytest.raises(CheckpointError, match="cannot download models:/entroad-nope/1"):
        cached_checkpoint("models:/entroad-nope/1", params, cache)
    assert not (cache / "models_entroad-nope_1").exists() and not (cache / "models_entroad-nope_1.part").exists()
