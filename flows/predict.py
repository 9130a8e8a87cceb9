"""Flow ``entroad-predict``: score a site folder with a model, on a Dask cluster when one is
named (``dask``, else ``orchestration.dask_address`` of params.yaml), in this process otherwise.

Resumable like ``entroad predict``: a rerun with the same ``out_dir`` scores only what is
missing (by shard on Dask), so the task may retry safely.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task

from entroad.config import Params
from flows.common import DEFAULT_PARAMS, publish_markdown, read_params, relpath


@task(name="predict-site", retries=1, retry_delay_seconds=5)
def predict_site(
    params: Params, model: str, input_path: str, out_dir: str, threshold: str | None, dask: str | None
) -> dict[str, Any]:
    """``entroad.predict.predict`` on one input folder; returns its counts and paths."""
    from entroad.predict import predict

    r = predict(model, input_path, out_dir, params=params, threshold=threshold, dask=dask, progress=False)
    return {"scores": str(r.scores_csv), "total": r.n_total, "scored": r.n_scored, "already_done": r.n_skipped,
            "unreadable": len(r.failures), "shards_run": r.shards_run, "shards_total": r.shards_total,
            "threshold": r.threshold, "random_init": r.random_init}


@flow(name="entroad-predict", log_prints=True)
def predict_flow(
    model: str,
    input_path: str,
    out_dir: str,
    params_path: str = DEFAULT_PARAMS,
    overrides: list[str] | None = None,
    threshold: str | None = None,
    dask: str | None = None,
) -> dict[str, Any]:
    params = read_params(params_path, overrides)
    where = dask or params.orchestration.dask_address
    summary = predict_site(params, model, input_path, out_dir, threshold, where)
    summary["dask"] = where
    publish_markdown(
        "entroad-predict",
        f"Scored {summary['scored']} of {summary['total']} image(s) ({summary['already_done']} already done, "
        f"{summary['unreadable']} unreadable) {'on ' + where if where else 'in one process'}: `{relpath(summary['scores'])}`",
        "Site prediction",
    )
    return summary
