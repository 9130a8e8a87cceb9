"""Task logic through ``.fn()`` (no Prefect run), runner selection, cache keys, deployment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prefect.task_runners import ThreadPoolTaskRunner

from entroad.errors import ConfigError
from entroad.evaluation.summary import summary_markdown
from entroad.tracking.keys import evaluation_settings_key, train_key
from flows import tasks
from flows.common import artifact_key, evaluation_runner, read_params
from flows.ingest import datasets_for_retrain
from tests.flows.conftest import pipeline_params


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A plain folder (no git, no DVC) with the tiny pipeline params and its raw sample data."""
    root = tmp_path_factory.mktemp("project")
    (root / "params.yaml").write_text(yaml.safe_dump(pipeline_params(root / "remote")))
    return root


def test_artifact_keys_are_prefect_safe():
    assert artifact_key("EntroAD Retrain: v3/ok") == "entroad-retrain-v3-ok"
    assert artifact_key("___") == "entroad"


def test_runner_is_chosen_in_params(project, monkeypatch):
    from prefect_dask import DaskTaskRunner

    monkeypatch.chdir(project)
    thread = evaluation_runner(read_params("params.yaml", ["orchestration.parallel=3"]))
    assert isinstance(thread, ThreadPoolTaskRunner) and thread._max_workers == 3
    dask = evaluation_runner(read_params("params.yaml", ["orchestration.task_runner=dask", "orchestration.dask_workers=3"]))
    assert isinstance(dask, DaskTaskRunner) and dask.cluster_kwargs["n_workers"] == 3
    remote = evaluation_runner(read_params("params.yaml", ["orchestration.task_runner=dask",
                                                           "orchestration.dask_address=tcp://sched:8786"]))
    assert remote.address == "tcp://sched:8786"
    with pytest.raises(ConfigError, match="task_runner"):
        read_params("params.yaml", ["orchestration.task_runner=ray"])


def test_cache_keys_follow_content_not_unrelated_settings(project, monkeypatch):
    monkeypatch.chdir(project)
    p = read_params("params.yaml")
    base = train_key(p, "abc.dir")
    assert train_key(read_params("params.yaml", ["promotion.margin=3", "schedule.cron=0 0 * * *"]), "abc.dir") == base
    assert train_key(read_params("params.yaml", ["train.num_workers=2"]), "abc.dir") == base
    assert train_key(p, "other.dir") != base
    assert train_key(read_params("params.yaml", ["train.lr=0.01"]), "abc.dir") != base
    ev = evaluation_settings_key(p)
    assert evaluation_settings_key(read_params("params.yaml", ["evaluation.batch_size=2"])) == ev
    assert evaluation_settings_key(read_params("params.yaml", ["evaluation.max_fpr=0.1"])) != ev
    # the Prefect cache of the heavy tasks ignores the Params object and folder paths
    excluded = {x for pol in tasks.CONTENT_CACHE.policies for x in getattr(pol, "exclude", [])}
    assert {"params", "run_dir", "model_dir"} <= excluded


def test_ingest_and_train_tasks_fn(project, monkeypatch):
    monkeypatch.chdir(project)
    p = read_params("params.yaml")
    assert datasets_for_retrain(p) == ["textures", "surfaces", "ct-mr"]
    made = tasks.make_sample_data.fn(p)
    assert sorted(made) == ["ct-mr", "surfaces", "textures"]
    assert tasks.make_sample_data.fn(p) == []
    first = tasks.ingest_dataset.fn(p, "textures")  # not a DVC repo: direct ingest, content version
    assert not first["skipped"] and first["version"].startswith("content:")
    again = tasks.ingest_dataset.fn(p, "textures")
    assert again["skipped"] and again["version"] == first["version"]
    assert tasks.push_data.fn(p, ["textures"]).startswith("not a DVC repository")

    key = train_key(p, first["version"])
    info = tasks.train_model.fn(p, key, first["version"], str(project / "runs" / f"textures-{key}"))
    assert Path(info["model_dir"], "weights.safetensors").is_file()
    assert info["backbone"]["random_init"] is True and info["data_version"] == first["version"]
    assert len(info["model_key"]) == 16


def test_summary_markdown_flags_random_init():
    summary = {"random_init": True, "report": "runs/x/report.html", "target_means": {"image_auroc": 61.0},
               "datasets": {"a": {"domain": "industrial", "data_version": "abc.dir", "in_domain": False,
                                  "metrics": {"image_auroc": 61.0, "pixel_auroc": None}}}}
    md = summary_markdown(summary)
    assert "RANDOM-INIT BACKBONE" in md and "| a | industrial | `abc.dir` | 61.0 | — |" in md


def test_deployment_uses_cron_from_params(project, monkeypatch):
    from flows.deploy import retrain_deployment

    monkeypatch.chdir(project)
    d = retrain_deployment("params.yaml", ["schedule.cron=15 2 * * *", "schedule.deployment=nightly"])
    assert d.name == "nightly"
    assert d.schedules[0].schedule.cron == "15 2 * * *"
    assert d.parameters["params_path"] == str(project / "params.yaml")
    assert d.parameters["overrides"] == ["schedule.cron=15 2 * * *", "schedule.deployment=nightly"]


def test_serve_without_server_says_what_to_do(project, monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deploy import serve_retrain

    monkeypatch.chdir(project)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with pytest.raises(ConfigError, match="prefect server start"):
            serve_retrain("params.yaml")


def test_flows_cli_help():
    out = subprocess.run([sys.executable, "-m", "flows", "--help"], capture_output=True, text=True, check=True).stdout
    for verb in ("quickstart", "retrain", "serve", "evaluate", "ingest", "train"):
        assert verb in out
