"""Prefect tasks: thin wrappers around ``entroad`` functions.

* IO-bound steps (ingestion through DVC, DVC push, MLflow calls) retry.
* Training and per-dataset evaluation are cached across runs on *content keys* (params hash
  + data versions + backbone identity + code hash, see :mod:`entroad.tracking.keys`): the
  cache policy is INPUTS + TASK_SOURCE with results persisted, and the ``params`` object
  itself is left out of the key so that unrelated settings (promotion margin, schedule...)
  do not retrain anything.
* MLflow logging, registration and the promotion gate are idempotent on their own: they
  look for what an earlier run already recorded before recording anything.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from entroad.config import Params
from flows.common import run_logger

# Cross-run cache: the named key inputs decide, never the Params object or a path.
CONTENT_CACHE = (INPUTS - "params" - "run_dir" - "model_dir") + TASK_SOURCE


# ---------------------------------------------------------------------------------- data
@task(name="sample-data", retries=1)
def make_sample_data(params: Params) -> list[str]:
    """Write the raw folders of the bundled sample datasets that are missing."""
    from entroad.data.ingest import ensure_samples

    return ensure_samples(params)


@task(name="ingest-dataset", task_run_name="ingest-{name}", retries=2, retry_delay_seconds=5)
def ingest_dataset(params: Params, name: str, force: bool = False, dask: str | None = None) -> dict[str, Any]:
    """``dvc repro ingest@<name>`` (or a direct ingest outside a DVC repo); DVC skips unchanged data.
    ``dask``: DICOM series on Dask workers (same bytes and version)."""
    from entroad.data.ingest import ingest_dataset as ingest

    r = ingest(params, name, force=force, progress=False, dask=dask)
    return {"name": r.name, "path": str(r.path), "version": r.version, "skipped": r.skipped,
            "seconds": round(r.seconds, 2), "counts": r.counts}


@task(name="push-data", retries=3, retry_delay_seconds=10)
def push_data(params: Params, names: list[str]) -> str:
    """Push the processed datasets to the DVC remote (``data.remote`` or the local default)."""
    from entroad.data.ingest import push_datasets

    return push_datasets(params, names)


def data_version_of(params: Params, name: str) -> str:
    from entroad.data.versioning import dataset_version

    return dataset_version(params, name)


# ---------------------------------------------------------------------------------- train
@task(name="train-model", task_run_name="train-{train_key}", cache_policy=CONTENT_CACHE, persist_result=True)
def train_model(params: Params, train_key: str, data_version: str, run_dir: str) -> dict[str, Any]:
    """Train into ``run_dir`` (resuming an interrupted run there); returns where the model is."""
    from entroad.tracking.training import train_in_folder

    return train_in_folder(params, run_dir, data_version)


@task(name="log-training-run", retries=2, retry_delay_seconds=5)
def log_training(params: Params, train_info: dict[str, Any]) -> dict[str, Any]:
    """The MLflow training run of this model: reused when the store already has it."""
    from entroad.tracking.training import log_training_once

    return log_training_once(params, train_info["run_dir"], train_info.get("train_key"))


# ---------------------------------------------------------------------------------- evaluate
@task(name="evaluate-dataset", task_run_name="evaluate-{dataset}", cache_policy=CONTENT_CACHE, persist_result=True)
def evaluate_dataset(
    params: Params, model_dir: str, model_key: str, dataset: str, data_version: str, settings_key: str
):
    """Evaluate the model on one dataset; returns the full EvaluationResult (for the report)."""
    from entroad.evaluation.engine import evaluate

    result = evaluate(model_dir, [dataset], params, None, progress=False)
    found = result.datasets[0].data_version
    if found != data_version:
        run_logger().warning("%s: data version changed during the run (%s -> %s)", dataset, data_version, found)
    return result


@task(name="write-evaluation-report")
def write_report(results: list, out_dir: str) -> dict[str, Any]:
    """Merge the per-dataset results into one cross-domain result; write results + report."""
    from entroad.evaluation.summary import write_merged

    return write_merged(results, out_dir)


@task(name="log-evaluation-run", retries=2, retry_delay_seconds=5)
def log_evaluation(params: Params, results: list, out_dir: str, train_run_id: str, eval_key: str) -> dict[str, Any]:
    """The MLflow evaluation run (nested under the training run); reused when already logged."""
    from entroad.evaluation.summary import merge_results
    from entroad.tracking.runs import log_evaluation_once

    return log_evaluation_once(params, merge_results(results), train_run_id, out_dir, eval_key)


# ---------------------------------------------------------------------------------- registry
@task(name="register-model", retries=2, retry_delay_seconds=5)
def register_model(params: Params, train_run_id: str, eval_run_id: str) -> dict[str, Any]:
    from entroad.tracking.gate import register_candidate

    mv, created = register_candidate(params, train_run_id, eval_run_id)
    return {"version": str(mv.version), "created": created, "decision": mv.tags.get("promotion.decision", "pending")}


@task(name="promotion-gate")
def promotion_gate(params: Params, version: str, reevaluation_dir: str) -> dict[str, Any]:
    """Run the gate for ``version`` unless it was already decided against today's champion."""
    from entroad.tracking.gate import gate_once

    return gate_once(params, version, reevaluation_dir)
