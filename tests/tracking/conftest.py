"""Tracking fixtures: a real (copied, pre-migrated) MLflow sqlite store per test, and one
real tiny training + evaluation per session to log into it."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from entroad.data.synthetic import write_processed_dataset
from tests.conftest import TINY_EVAL, tiny_params
from tests.tracking.stores import clear_tracking_env, install_store, migrated_db

IMAGE_PX = 64
TARGETS = ["tgt-industrial", "tgt-medical"]


def params_for(data_root: Path, **overrides):
    base = {
        "data.root": str(data_root),
        "train.dataset": "aux",
        "train.epochs": 1,
        "evaluation.targets": list(TARGETS),
        **TINY_EVAL,
        "evaluation.batch_size": 8,
    }
    base.update(overrides)
    return tiny_params(**base)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    return migrated_db(tmp_path_factory.mktemp("mlflow-template"))


@pytest.fixture
def store(tmp_path, mlflow_template, monkeypatch) -> Path:
    """A fresh embedded store in ``tmp_path`` (also the working directory)."""
    clear_tracking_env(monkeypatch)
    install_store(mlflow_template, tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("datasets")
    processed = root / "processed"
    write_processed_dataset(processed, "aux", ["stripes", "dots"], 2, 2, IMAGE_PX, seed=0)
    write_processed_dataset(processed, TARGETS[0], ["grid"], 3, 3, IMAGE_PX, seed=1)
    write_processed_dataset(processed, TARGETS[1], ["fabric"], 3, 3, IMAGE_PX, seed=2, domain="medical")
    return root


@pytest.fixture(scope="session")
def params(data_root):
    return params_for(data_root)


@pytest.fixture(scope="session")
def trained(params, tmp_path_factory):
    """A real one-epoch training of the tiny random-init model (TrainResult)."""
    from entroad.train import train

    return train(params, tmp_path_factory.mktemp("train") / "run", progress=False)


@pytest.fixture(scope="session")
def evaluated(params, trained, tmp_path_factory):
    """Its real cross-domain evaluation (EvaluationResult) and the folder holding the report."""
    from entroad.evaluation.engine import evaluate

    out = tmp_path_factory.mktemp("evaluation")
    return evaluate(trained.model_dir, TARGETS, params, out, progress=False), out


def shifted(result, delta: float, datasets: list[str] | None = None, versions: dict[str, str] | None = None):
    """A copy of an EvaluationResult with every dataset metric moved by ``delta`` points (and
    optionally other data versions): the gate tests need models of known relative quality."""
    out = []
    for d in result.datasets:
        metrics = dict(d.metrics)
        if datasets is None or d.name in datasets:
            metrics = {k: (None if v is None else max(0.0, min(100.0, v + delta))) for k, v in metrics.items()}
        version = (versions or {}).get(d.name, d.data_version)
        out.append(dataclasses.replace(d, metrics=metrics, data_version=version))
    return dataclasses.replace(result, datasets=out)


def git_repo(path: Path) -> str:
    """``git init`` + one commit in ``path``; returns the commit sha."""
    env_args = ["-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    (path / "README").write_text("x\n")
    subprocess.run(["git", *env_args, "-C", str(path), "add", "README"], check=True)
    subprocess.run(["git", *env_args, "-C", str(path), "commit", "-q", "-m", "init"], check=True)
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
