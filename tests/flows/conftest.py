"""Flow fixtures: one Prefect test harness per session (temporary PREFECT_HOME), and a real
git + DVC repository in a temporary folder with tiny sample data and an embedded MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Before Prefect is imported anywhere: its home (results, local storage) in a temporary folder.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="entroad-test-prefect-")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pytest  # noqa: E402
import yaml  # noqa: E402

from tests.tracking.stores import clear_tracking_env, install_store, migrated_db  # noqa: E402

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false"]


def pipeline_params(remote: Path) -> dict:
    """A whole pipeline on tiny data: one training domain, an industrial and a DICOM target."""
    return {
        "backbone": {"name": "entroad-tiny", "pretrained": None, "image_size": 112, "random_init_fallback": False,
                     "device": "cpu", "precision": "fp32"},
        "train": {"dataset": "textures", "epochs": 1, "batch_size": 4},
        "data": {
            "root": "datasets",
            "remote": str(remote),
            "datasets": {
                "textures": {"format": "mvtec", "source": "datasets/raw/textures", "domain": "industrial",
                             "generate": {"kind": "textures-mvtec", "families": ["stripes", "dots"], "n_train_good": 1,
                                          "n_test_good": 2, "n_test_per_defect": 1, "size": 64, "seed": 0}},
                "surfaces": {"format": "visa", "source": "datasets/raw/surfaces", "domain": "industrial",
                             "generate": {"kind": "surfaces-visa", "families": ["wood"], "n_normal": 3,
                                          "n_anomalous": 3, "size": 64, "seed": 1}},
                "ct-mr": {"format": "dicom", "source": "datasets/raw/ct-mr", "domain": "medical",
                          "options": {"labels": "labels.csv", "size": 64},
                          "generate": {"kind": "dicom-study", "size": 64, "ct_slices": 4, "mr_slices": 4,
                                       "mf_frames": 3, "seed": 0}},
            },
        },
        "evaluation": {"targets": ["surfaces", "ct-mr"], "suites": {}, "num_workers": 0, "batch_size": 8,
                       "report_examples": 2, "min_per_label": 2, "pixel_metrics": "exact"},
        "orchestration": {"task_runner": "thread", "parallel": 2},
    }


# dvc.yaml of the project without its code dependencies (the temporary repo holds no code).
DVC_YAML = """
stages:
  fingerprint:
    foreach: ${data.datasets}
    do:
      cmd: entroad data fingerprint ${key}
      always_changed: true
      outs:
        - ${data.root}/.cache/fingerprints/${key}.json:
            cache: false
  ingest:
    foreach: ${data.datasets}
    do:
      cmd: entroad ingest ${key} --no-dvc
      deps:
        - ${data.root}/.cache/fingerprints/${key}.json
      params:
        - data.datasets.${key}
      outs:
        - ${data.root}/processed/${key}:
            persist: true
"""


def make_pipeline_repo(root: Path, mlflow_template: Path) -> Path:
    """git init + dvc init + params.yaml/dvc.yaml, one commit, and a copied MLflow store."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(pipeline_params(root.parent / "dvc-remote"), sort_keys=False))
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / ".gitignore").write_text("/mlflow/\n/runs/\n/datasets/raw/\n/datasets/.cache/\n/datasets/.deid_salt\n")
    (root / ".dvcignore").write_text("/datasets/raw/\n")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True, env=env)
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "pipeline"], cwd=root, check=True)
    install_store(mlflow_template, root)
    return root


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    return migrated_db(tmp_path_factory.mktemp("mlflow-template"))


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def in_dir(monkeypatch):
    """chdir into a folder for one test, with MLflow pointed at that folder's embedded store."""
    clear_tracking_env(monkeypatch)

    def enter(path: Path) -> Path:
        monkeypatch.chdir(path)
        return path

    return enter
