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

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from entroad.config import Params
from flows.common import random_init_build_lock, run_logger

# Cross-run cache: the named key inputs decide, never the Params object or a path.
CONTENT_CACHE = (INPUTS - "params" - "run_dir" - "model_dir") + TASK_SOURCE
MLFLOW_RUN_FILE = "mlflow-run.json"  # in a training folder: which MLflow run holds its model


# ---------------------------------------------------------------------------------- data
@task(name="sample-data", retries=1)
def make_sample_data(params: Params) -> list[str]:
    """Write the raw folders of the bundled sample datasets that are missing."""
    from entroad.data.ingest import ensure_samples

    return ensure_samples(params)


@task(name="ingest-dataset", task_run_name="ingest-{name}", retries=2, retry_delay_seconds=5)
def ingest_dataset(params: Params, name: str, force: bool = False) -> dict[str, Any]:
    """``dvc repro ingest@<name>`` (or a direct ingest outside a DVC repo); DVC skips unchanged data."""
    from entroad.data.ingest import ingest_dataset as ingest

    r = ingest(params, name, force=force, progress=False)
    return {"name": r.name, "path": str(r.path), "version": r.version, "skipped": r.skipped,
            "seconds": round(r.seconds, 2), "counts": r.counts}


@task(name="push-data", retries=3, retry_delay_seconds=10)
def push_data(params: Params, names: list[str]) -> str:
    """Push the processed datasets to the DVC remote (``data.remote`` or the local default)."""
    from entroad.data import dvc_ops
    from entroad.data.versioning import find_dvc_root

    repo = find_dvc_root(Path.cwd())
    if repo is None:
        return "not a DVC repository: nothing pushed"
    out = dvc_ops.push(repo, [dvc_ops.stage_name(n) for n in names], params.data.remote)
    return (out or "").strip().splitlines()[-1] if (out or "").strip() else "up to date"


def data_version_of(params: Params, name: str) -> str:
    from entroad.data.versioning import data_version, dataset_dir

    return data_version(dataset_dir(params, name))


# ---------------------------------------------------------------------------------- train
@task(name="train-model", task_run_name="train-{train_key}", cache_policy=CONTENT_CACHE, persist_result=True)
def train_model(params: Params, train_key: str, data_version: str, run_dir: str) -> dict[str, Any]:
    """Train into ``run_dir`` (resuming an interrupted run there); returns where the model is."""
    from entroad.train import train

    log = run_logger()
    out = Path(run_dir)
    resume = (out / "checkpoints").is_dir()
    result = train(params, out, resume=resume, progress=False)
    if result.data_version != data_version:
        log.warning("training data changed during the run: %s != %s", result.data_version, data_version)
    resumed = f" (resumed after epoch {result.resumed_from})" if result.resumed_from else ""
    log.info("trained %d epoch(s)%s; final loss %.4f", result.epochs_run, resumed, result.history[-1]["loss"])
    return _train_info(result)


def _train_info(result) -> dict[str, Any]:
    from entroad.tracking.keys import checkpoint_key

    return {
        "run_dir": str(Path(result.out_dir).resolve()),
        "model_dir": str(Path(result.model_dir).resolve()),
        "model_key": checkpoint_key(result.model_dir),
        "dataset": result.dataset,
        "data_version": result.data_version,
        "epochs": len(result.history),
        "final_loss": float(result.history[-1]["loss"]),
        "backbone": result.backbone.to_json(),
    }


@task(name="log-training-run", retries=2, retry_delay_seconds=5)
def log_training(params: Params, train_info: dict[str, Any]) -> dict[str, Any]:
    """The MLflow training run of this model: reused when the store already has it."""
    from entroad.tracking import store
    from entroad.tracking.runs import log_training_run, model_uri_of
    from entroad.train import train

    log = run_logger()
    run_dir = Path(train_info["run_dir"])
    marker = run_dir / MLFLOW_RUN_FILE
    target = store.connect(params)
    if marker.is_file():
        known = json.loads(marker.read_text())
        if known.get("tracking_uri") == target.uri and _finished_run(params, known["run_id"]):
            return {"run_id": known["run_id"], "model_uri": known["model_uri"], "reused": True}
    # finished folder + resume=True: no epochs, just the TrainResult the logger needs
    result = train(params, run_dir, resume=True, progress=False)
    run_id = log_training_run(params, result, run_name=f"train-{run_dir.name}",
                              tags={"entroad.train_key": train_info.get("train_key", run_dir.name)})
    info = {"run_id": run_id, "model_uri": model_uri_of(run_id), "tracking_uri": target.uri}
    marker.write_text(json.dumps(info, indent=2) + "\n")
    log.info("MLflow training run %s, model %s", run_id, info["model_uri"])
    return {**info, "reused": False}


def _finished_run(params: Params, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    from entroad.tracking import store

    try:
        run = store.client(params, check=False).get_run(run_id)
    except MlflowException:
        return False
    return run.info.status == "FINISHED" and run.info.lifecycle_stage == "active"


# ---------------------------------------------------------------------------------- evaluate
@task(name="evaluate-dataset", task_run_name="evaluate-{dataset}", cache_policy=CONTENT_CACHE, persist_result=True)
def evaluate_dataset(
    params: Params, model_dir: str, model_key: str, dataset: str, data_version: str, settings_key: str
):
    """Evaluate the model on one dataset; returns the full EvaluationResult (for the report)."""
    from entroad.checkpoint import read_checkpoint_config
    from entroad.evaluation.engine import evaluate

    random_init = bool(read_checkpoint_config(model_dir)["backbone"].get("random_init"))
    with random_init_build_lock() if random_init else nullcontext():
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
    from entroad.tracking import runs, store

    client = store.client(params)
    existing = [r for r in runs.find_evaluations(client, train_run_id)
                if r.data.tags.get("entroad.eval_key") == eval_key]
    if existing:
        return {"run_id": existing[0].info.run_id, "reused": True}
    run_id = runs.log_evaluation_run(params, merge_results(results), train_run_id=train_run_id, out_dir=out_dir,
                                     run_name=f"evaluate-{eval_key}", tags={"entroad.eval_key": eval_key})
    return {"run_id": run_id, "reused": False}


# ---------------------------------------------------------------------------------- registry
@task(name="register-model", retries=2, retry_delay_seconds=5)
def register_model(params: Params, train_run_id: str, eval_run_id: str) -> dict[str, Any]:
    from entroad.tracking.gate import register_candidate

    mv, created = register_candidate(params, train_run_id, eval_run_id)
    return {"version": str(mv.version), "created": created, "decision": mv.tags.get("promotion.decision", "pending")}


@task(name="promotion-gate")
def promotion_gate(params: Params, version: str, reevaluation_dir: str) -> dict[str, Any]:
    """Run the gate for ``version`` unless it was already decided against today's champion."""
    from entroad.tracking import registry, store
    from entroad.tracking.gate import run_gate

    client = store.client(params)
    name = params.tracking.registered_model
    mv = registry.get_version(client, name, version)
    champ = registry.version_by_alias(client, name, registry.CHAMPION)
    decided = mv.tags.get(registry.TAG_DECISION, "pending")
    compared = mv.tags.get("promotion.compared_to")
    current = f"v{champ.version}" if champ is not None else "none"
    if decided not in {"pending", "needs_reevaluation"} and (
        compared == current or (champ is not None and str(champ.version) == str(version))
    ):
        return {"verdict": decided, "reused": True, "champion": str(champ.version) if champ else None,
                "markdown": mv.description or "", "reasons": [mv.tags.get("promotion.reason", "")], "rows": []}
    res = run_gate(params, version, reevaluate=True, reevaluation_dir=reevaluation_dir, hold_lock=False)
    d = res.decision
    return {
        "verdict": d.verdict if d else "already_champion",
        "reused": False,
        "champion": res.champion_after,
        "champion_before": res.champion_before,
        "markdown": d.to_markdown() if d else res.message,
        "reasons": d.reasons if d else [res.message],
        "rows": d.table() if d else [],
        "reevaluation_run": res.reevaluation_run,
    }
