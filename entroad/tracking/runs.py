"""MLflow runs of training and evaluation, with full lineage.

Training run (``entroad.kind=train``): the resolved params (flat params + ``params.json``),
per-epoch loss parts as metrics, ``history.jsonl``, lineage tags, and the model logged as a
pyfunc (artifact ``checkpoint``) — the ``models:/m-…`` URI is in the tag ``entroad.model_uri``.

Evaluation run (``entroad.kind=evaluate``), nested under the training run of the model it
evaluated: metrics ``<dataset>/<metric>`` (dataset means), ``<dataset>/<class>/<metric>``
and ``mean/<metric>`` (over the target datasets), the data version of every dataset as a
tag, and the results + report + figures under the artifact folder ``evaluation/``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from entroad.config import Params
from entroad.errors import TrackingError
from entroad.tracking import lineage, store
from entroad.tracking.pyfunc import log_pyfunc_model
from entroad.tracking.store import access, ensure_experiment

log = logging.getLogger(__name__)

_BAD_NAME = re.compile(r"[^A-Za-z0-9_\-. :/]")
MEAN_PREFIX = "mean/"


def metric_name(*parts: str) -> str:
    """A metric name MLflow accepts (alphanumerics, ``_ - . : /`` and spaces)."""
    return "/".join(_BAD_NAME.sub("_", str(p)) for p in parts)


def _log_params(params: Params) -> None:
    import mlflow

    flat = {k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in params.flat().items()}
    items = sorted(flat.items())
    for i in range(0, len(items), 100):  # MLflow's batch limit
        mlflow.log_params({k: str(v)[:6000] for k, v in items[i : i + 100]})
    mlflow.log_dict(params.resolved(), "params.json")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def log_training_run(
    params: Params,
    result: Any,
    *,
    root: str | Path | None = None,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Log a finished :class:`entroad.train.TrainResult` (params, losses, lineage, pyfunc model).

    Returns the run id. The run is marked FAILED (and the error re-raised) if logging the
    model fails, so a half-logged model is never taken for a usable one.
    """
    import mlflow

    experiment_id = ensure_experiment(params, root)
    all_tags = {
        **lineage.lineage_tags(result.backbone, {result.dataset: result.data_version}, root),
        lineage.TAG_KIND: "train",
        "entroad.train_dataset": result.dataset,
        "entroad.train_dir": str(Path(result.out_dir).resolve()),
        **dict(tags or {}),
    }
    name = run_name or f"train-{result.dataset}"
    with access("log runs", f"experiment {params.tracking.experiment!r}", _LOG_HINT), \
            mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=all_tags) as run:
        _log_params(params)
        for rec in result.history:
            step = int(rec.get("epoch", 0))
            mlflow.log_metrics({f"train/{k}": float(v) for k, v in rec.items() if k != "epoch" and _finite(v)}, step=step)
        mlflow.log_metrics({"train/epochs": float(len(result.history)), "train/learnable_count": float(result.learnable_count)})
        history = Path(result.out_dir) / "history.jsonl"
        if history.is_file():
            mlflow.log_artifact(str(history))
        info = log_pyfunc_model(result.model_dir)
        mlflow.set_tag(lineage.TAG_MODEL_URI, info.model_uri)
        run_id = run.info.run_id
    log.info("MLflow training run %s (model %s)", run_id, info.model_uri)
    return run_id


_LOG_HINT = "logging needs EDIT on the experiment (trainers and the promoter have it); ask the MLflow admin"


def model_uri_of(run_id: str, client=None) -> str:
    """The logged pyfunc model of a training run (``models:/m-…``)."""
    from mlflow import MlflowClient

    run = (client or MlflowClient()).get_run(run_id)
    uri = run.data.tags.get(lineage.TAG_MODEL_URI)
    if not uri:
        raise TrackingError(f"run {run_id} has no logged model (tag {lineage.TAG_MODEL_URI}); it is not a training run")
    return uri


def evaluation_metrics(result: Any) -> dict[str, float]:
    """Dataset means, class values and target means of an EvaluationResult, MLflow-named."""
    out: dict[str, float] = {}
    for d in result.datasets:
        for k, v in d.metrics.items():
            if _finite(v):
                out[metric_name(d.name, k)] = float(v)
        for c in d.classes:
            for k, v in c.metrics.items():
                if _finite(v):
                    out[metric_name(d.name, c.cls, k)] = float(v)
    for k, v in target_means(result).items():
        out[MEAN_PREFIX + k] = v
    return out


def target_means(result: Any) -> dict[str, float]:
    """Mean of each metric over the evaluated datasets that are not the training domain."""
    targets = [d for d in result.datasets if not d.in_domain] or list(result.datasets)
    keys = sorted({k for d in targets for k in d.metrics})
    means = {}
    for k in keys:
        vals = [d.metrics[k] for d in targets if _finite(d.metrics.get(k))]
        if vals:
            means[k] = float(sum(vals) / len(vals))
    return means


def log_evaluation_run(
    params: Params,
    result: Any,
    *,
    train_run_id: str | None = None,
    out_dir: str | Path | None = None,
    root: str | Path | None = None,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Log an :class:`entroad.evaluation.results.EvaluationResult`; nested under ``train_run_id`` when given."""
    import mlflow

    experiment_id = ensure_experiment(params, root)
    m = result.model
    backbone = {
        "name": m.backbone, "pretrained": m.pretrained, "image_size": m.image_size,
        "weights_sha256": m.weights_sha256, "random_init": m.random_init,
    }
    versions = {d.name: d.data_version for d in result.datasets}
    all_tags = {
        **lineage.lineage_tags(backbone, versions, root),
        lineage.TAG_KIND: "evaluate",
        lineage.TAG_TARGETS: ",".join(sorted(versions)),
        "entroad.in_domain": ",".join(sorted(d.name for d in result.datasets if d.in_domain)),
        "entroad.model_source": str(m.source),
        **({lineage.TAG_TRAIN_RUN: train_run_id} if train_run_id else {}),
        **({lineage.TAG_EVAL_DIR: str(Path(out_dir).resolve())} if out_dir else {}),
        **dict(tags or {}),
    }
    name = run_name or "evaluate-" + "+".join(sorted(versions))[:80]
    with access("log runs", f"experiment {params.tracking.experiment!r}", _LOG_HINT), mlflow.start_run(
        experiment_id=experiment_id, run_name=name, tags=all_tags, parent_run_id=train_run_id, nested=bool(train_run_id)
    ) as run:
        _log_params(params)
        metrics = evaluation_metrics(result)
        items = sorted(metrics.items())
        for i in range(0, len(items), 500):
            mlflow.log_metrics(dict(items[i : i + 500]))
        mlflow.log_dict(
            {"model": m.to_json(), "datasets": {d.name: d.to_json() for d in result.datasets}}, "evaluation/summary.json"
        )
        if out_dir is not None and Path(out_dir).is_dir():
            mlflow.log_artifacts(str(out_dir), artifact_path="evaluation")
        run_id = run.info.run_id
    log.info("MLflow evaluation run %s (%d metrics)", run_id, len(metrics))
    return run_id


def evaluation_of_run(run) -> dict[str, Any]:
    """``{"datasets": {name: {metric: value}}, "data_versions": {...}, "in_domain": [...]}`` of an evaluation run."""
    tags = run.data.tags
    names = [n for n in tags.get(lineage.TAG_TARGETS, "").split(",") if n]
    in_domain = [n for n in tags.get("entroad.in_domain", "").split(",") if n]
    metrics: dict[str, dict[str, float]] = {n: {} for n in names}
    for key, value in run.data.metrics.items():
        parts = key.split("/")
        if len(parts) == 2 and parts[0] in metrics:
            metrics[parts[0]][parts[1]] = float(value)
    return {
        "run_id": run.info.run_id,
        "datasets": metrics,
        "data_versions": lineage.data_versions_from_tags(tags),
        "in_domain": in_domain,
        "random_init": tags.get(lineage.TAG_RANDOM_INIT) == "true",
    }


def find_evaluations(client, train_run_id: str, experiment_ids: list[str] | None = None) -> list:
    """Finished evaluation runs of the model trained in ``train_run_id``, newest first."""
    if experiment_ids is None:
        experiment_ids = [client.get_run(train_run_id).info.experiment_id]
    return client.search_runs(
        experiment_ids=experiment_ids,
        filter_string=(
            f"tags.`{lineage.TAG_KIND}` = 'evaluate' and tags.`{lineage.TAG_TRAIN_RUN}` = '{train_run_id}' "
            "and attributes.status = 'FINISHED'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=50,
    )


EVAL_KEY_TAG = "entroad.eval_key"


def log_evaluation_once(params: Params, result: Any, train_run_id: str, out_dir: str | Path, eval_key: str) -> dict[str, Any]:
    """The evaluation run of ``eval_key`` under ``train_run_id``: reused when the store already
    has it (a re-run pipeline logs nothing twice), else logged now."""
    existing = [r for r in find_evaluations(store.client(params), train_run_id)
                if r.data.tags.get(EVAL_KEY_TAG) == eval_key]
    if existing:
        return {"run_id": existing[0].info.run_id, "reused": True}
    run_id = log_evaluation_run(params, result, train_run_id=train_run_id, out_dir=out_dir,
                                run_name=f"evaluate-{eval_key}", tags={EVAL_KEY_TAG: eval_key})
    return {"run_id": run_id, "reused": False}
