"""Flow ``entroad-evaluate``: cross-domain evaluation, fanned out over datasets.

One mapped task per dataset (threads, or Dask workers with ``orchestration.task_runner:
dask``), each cached on (checkpoint hash, dataset, data version, evaluation settings); then
one cross-domain results folder + report, an MLflow evaluation run nested under the
training run, and a Markdown artifact with the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, unmapped

from entroad.evaluation.summary import merge_results, summarize, summary_markdown
from entroad.model_source import cached_checkpoint
from entroad.tracking.keys import checkpoint_key, digest, evaluation_settings_key
from flows import tasks
from flows.common import DEFAULT_PARAMS, evaluation_runner, publish_markdown, read_params, run_logger


@flow(name="entroad-evaluate", log_prints=True)
def evaluate_flow(
    model: str,
    params_path: str = DEFAULT_PARAMS,
    overrides: list[str] | None = None,
    datasets: list[str] | None = None,
    out_dir: str | None = None,
    train_run_id: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` (checkpoint folder or MLflow URI) on ``datasets`` (default:
    evaluation.targets); returns the summary (metrics, report path, MLflow run, cache hits)."""
    log = run_logger()
    params = read_params(params_path, overrides)
    names = list(datasets or params.evaluation.targets)
    if not names:
        from entroad.errors import ConfigError

        raise ConfigError("no datasets to evaluate: set evaluation.targets in params.yaml or pass datasets")
    model_dir = str(cached_checkpoint(model, params))
    versions = {n: tasks.data_version_of(params, n) for n in names}  # a missing dataset fails here, clearly
    model_key, settings_key = checkpoint_key(model_dir), evaluation_settings_key(params)
    eval_key = digest({"model": model_key, "settings": settings_key, "data": versions})
    out = Path(out_dir) if out_dir else Path(model_dir).parent / "evaluation" / eval_key

    futures = tasks.evaluate_dataset.map(
        params=unmapped(params), model_dir=unmapped(model_dir), model_key=unmapped(model_key),
        dataset=names, data_version=[versions[n] for n in names], settings_key=unmapped(settings_key),
    )
    results = [f.result() for f in futures]  # raises the first failure: nothing is registered then
    cached = [n for n, f in zip(names, futures, strict=True) if f.state.name == "Cached"]
    if cached:
        log.info("evaluation: cache hit for %s", ", ".join(cached))
    if len(cached) == len(names) and (out / "results.json").is_file() and (out / "report.html").is_file():
        summary = summarize(merge_results(results), str(out))
        summary["report_reused"] = True
    else:
        summary = tasks.write_report(results, str(out))
        summary["report_reused"] = False
    summary.update(eval_key=eval_key, cached=cached, model_dir=model_dir)
    if train_run_id:
        summary["mlflow"] = tasks.log_evaluation(params, results, str(out), train_run_id, eval_key)
    publish_markdown("entroad-evaluation", summary_markdown(summary), "Cross-domain evaluation of this run")
    return summary


def with_runner(params):
    """``evaluate_flow`` on the task runner chosen in params.yaml."""
    return evaluate_flow.with_options(task_runner=evaluation_runner(params))
