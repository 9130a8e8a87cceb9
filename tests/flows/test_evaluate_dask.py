"""The evaluation fan-out on a local Dask cluster (prefect-dask's DaskTaskRunner from params)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from entroad.checkpoint import save_checkpoint
from entroad.data.synthetic import write_processed_dataset
from entroad.model import EntroAD
from flows.common import read_params
from flows.evaluate import with_runner
from tests.conftest import tiny_params

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def eval_project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dask-project")
    processed = root / "datasets" / "processed"
    write_processed_dataset(processed, "tgt-a", ["grid"], 3, 3, 64, seed=1)
    write_processed_dataset(processed, "tgt-b", ["fabric"], 3, 3, 64, seed=2, domain="medical")
    params = tiny_params(**{
        "evaluation.targets": ["tgt-a", "tgt-b"], "evaluation.num_workers": 0, "evaluation.min_per_label": 2,
        "evaluation.report_examples": 2, "orchestration.task_runner": "dask", "orchestration.dask_workers": 2,
    })
    (root / "params.yaml").write_text(yaml.safe_dump(params.resolved()))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = EntroAD.build(tiny_params(), device="cpu")
    save_checkpoint(model, root / "model", extra={"trained_on": {"dataset": "aux", "data_version": "content:x"}})
    return root


def test_evaluate_fans_out_on_local_dask_cluster(eval_project, prefect_harness, monkeypatch):
    from prefect_dask import DaskTaskRunner

    monkeypatch.chdir(eval_project)
    params = read_params("params.yaml")
    flow = with_runner(params)
    assert isinstance(flow.task_runner, DaskTaskRunner)
    summary = flow(str(eval_project / "model"), "params.yaml")
    assert sorted(summary["datasets"]) == ["tgt-a", "tgt-b"]
    assert summary["cached"] == [] and summary["random_init"] is True
    assert Path(summary["report"]).is_file()
    results = json.loads((Path(summary["out_dir"]) / "results.json").read_text())
    assert [d["name"] for d in results["datasets"]] == ["tgt-a", "tgt-b"]
    assert all(d["metrics"]["image_auroc"] is not None for d in results["datasets"])

    # the same model and data again: every dataset is a cache hit, the report is reused
    again = with_runner(read_params("params.yaml", ["orchestration.task_runner=thread"]))(
        str(eval_project / "model"), "params.yaml")
    assert sorted(again["cached"]) == ["tgt-a", "tgt-b"] and again["report_reused"]
