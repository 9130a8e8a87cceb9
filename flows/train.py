"""Flow ``entroad-train``: train on ``train.dataset`` and log the model to MLflow.

The training folder is ``runs/<dataset>-<train key>/`` where the key hashes params, the
training data version, the backbone actually loaded and the model code; the Prefect cache
uses the same key, so an unchanged re-run skips training (and, when the folder is gone, the
cache is refreshed instead of trusting it). An interrupted training resumes in its folder.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Any

from prefect import flow

from entroad.locks import pipeline_lock
from entroad.tracking.training import plan_training
from flows import tasks
from flows.common import DEFAULT_PARAMS, read_params, run_logger

# Prefect's root level is WARNING, which would swallow the per-epoch lines (loss, duration,
# ETA): the only sign of life during the long step of a quickstart or retrain.
logging.getLogger("entroad.train").setLevel(logging.INFO)


@flow(name="entroad-train", log_prints=True)
def train_flow(
    params_path: str = DEFAULT_PARAMS,
    overrides: list[str] | None = None,
    data_version: str | None = None,
    track: bool = True,
    hold_lock: bool = True,
) -> dict[str, Any]:
    """Train (or find the finished training) and log it; returns the training info + MLflow run.

    ``hold_lock=False`` when the caller (the retrain flow) already holds the pipeline lock.
    """
    params = read_params(params_path, overrides)
    lock = pipeline_lock(wait_s=params.orchestration.lock_wait_s, what="train flow") if hold_lock else nullcontext()
    with lock:
        return _train(params, data_version, track)


def _train(params, data_version: str | None, track: bool) -> dict[str, Any]:
    log = run_logger()
    version = data_version or tasks.data_version_of(params, params.train.dataset)
    key, run_dir, finished = plan_training(params, version)
    train_task = tasks.train_model
    if not finished:
        train_task = train_task.with_options(refresh_cache=True)  # never trust a cache without its folder
    state = train_task(params, key, version, str(run_dir), return_state=True)
    info = {**state.result(), "train_key": key, "cached": state.name == "Cached"}
    if info["cached"]:
        log.info("training: cache hit for %s (data %s) -> %s", params.train.dataset, version, run_dir)
    if track:
        info["mlflow"] = tasks.log_training(params, info)
    return info
