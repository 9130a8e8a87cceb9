"""The pipeline's training runs: one folder per content key, trained (or resumed) there, and
logged to MLflow once.

The folder is ``runs/<dataset>-<train key>/`` where the key (:func:`~entroad.tracking.keys.train_key`)
hashes params, the training data version, the backbone actually loaded and the model code,
so an unchanged re-run finds its finished model and an interrupted one resumes in place. A
small marker file in the folder remembers which MLflow run holds its model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from entroad.checkpoint import is_checkpoint
from entroad.config import Params
from entroad.tracking import store
from entroad.tracking.keys import checkpoint_key, train_key
from entroad.tracking.runs import log_training_run, model_uri_of
from entroad.train import TrainResult, train

log = logging.getLogger(__name__)

RUNS_DIR = "runs"
MLFLOW_RUN_FILE = "mlflow-run.json"  # in a training folder: which MLflow run holds its model


def training_dir(params: Params, key: str, root: str | Path = RUNS_DIR) -> Path:
    return Path(root) / f"{params.train.dataset}-{key}"


def plan_training(params: Params, data_version: str) -> tuple[str, Path, bool]:
    """``(train key, folder, finished)`` for training on ``data_version`` of ``train.dataset``."""
    key = train_key(params, data_version)
    run_dir = training_dir(params, key)
    return key, run_dir, is_checkpoint(run_dir / "model")


def train_info(result: TrainResult) -> dict[str, Any]:
    """What the pipeline passes on about a finished training (plain data, cacheable)."""
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


def train_in_folder(params: Params, run_dir: str | Path, data_version: str) -> dict[str, Any]:
    """Train into ``run_dir``, resuming an interrupted run there; returns :func:`train_info`."""
    out = Path(run_dir)
    result = train(params, out, resume=(out / "checkpoints").is_dir(), progress=False)
    if result.data_version != data_version:
        log.warning("training data changed during the run: %s != %s", result.data_version, data_version)
    resumed = f" (resumed after epoch {result.resumed_from})" if result.resumed_from else ""
    log.info("trained %d epoch(s)%s; final loss %.4f", result.epochs_run, resumed, result.history[-1]["loss"])
    return train_info(result)


def _finished_run(params: Params, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        run = store.client(params, check=False).get_run(run_id)
    except MlflowException:  # deleted or unknown in this store: log it again
        return False
    return run.info.status == "FINISHED" and run.info.lifecycle_stage == "active"


def log_training_once(params: Params, run_dir: str | Path, train_key_: str | None = None) -> dict[str, Any]:
    """The MLflow training run of the model in ``run_dir``: reused when this store already
    has it finished, else logged now. Returns ``run_id``, ``model_uri``, ``reused``."""
    folder = Path(run_dir)
    marker = folder / MLFLOW_RUN_FILE
    target = store.connect(params)
    if marker.is_file():
        known = json.loads(marker.read_text())
        if known.get("tracking_uri") == target.uri and _finished_run(params, known["run_id"]):
            return {"run_id": known["run_id"], "model_uri": known["model_uri"], "reused": True}
    # finished folder + resume=True: no epochs, just the TrainResult the logger needs
    result = train(params, folder, resume=True, progress=False)
    run_id = log_training_run(params, result, run_name=f"train-{folder.name}",
                              tags={"entroad.train_key": train_key_ or folder.name})
    info = {"run_id": run_id, "model_uri": model_uri_of(run_id), "tracking_uri": target.uri}
    marker.write_text(json.dumps(info, indent=2) + "\n")
    log.info("MLflow training run %s, model %s", run_id, info["model_uri"])
    return {**info, "reused": False}
