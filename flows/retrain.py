"""Flow ``entroad-retrain``: the pipeline.

ingest what changed -> train (cached on data + params) -> cross-domain evaluation (fan-out)
-> register a version (only after a finished evaluation) -> promotion gate.

The whole run holds the pipeline lock of the checkout, so a second retrain started at the
same time waits ``orchestration.lock_wait_s`` seconds and then fails with a clear message.
Every step that finds its work already done says so; the run ends with a Markdown artifact
(evaluation table + promotion decision) and returns a summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from entroad.evaluation.summary import summary_markdown
from entroad.locks import pipeline_lock
from flows import evaluate as evaluate_mod
from flows.common import DEFAULT_PARAMS, publish_markdown, read_params, relpath, run_logger
from flows.ingest import datasets_for_retrain, ingest_flow
from flows.train import train_flow


@flow(name="entroad-retrain", log_prints=True)
def retrain_flow(
    params_path: str = DEFAULT_PARAMS,
    overrides: list[str] | None = None,
    force_ingest: bool = False,
    push: bool = True,
) -> dict[str, Any]:
    log = run_logger()
    params = read_params(params_path, overrides)
    with pipeline_lock(wait_s=params.orchestration.lock_wait_s, what="retrain flow"):
        skipped: list[str] = []
        data = ingest_flow(params_path, overrides, datasets=datasets_for_retrain(params), force=force_ingest, push=push)
        skipped += [f"ingest {n} (unchanged)" for n, r in data.items() if r["skipped"]]

        trained = train_flow(params_path, overrides, data_version=data[params.train.dataset]["version"], hold_lock=False)
        if trained["cached"]:
            skipped.append(f"training (cache hit: {relpath(trained['run_dir'])})")
        if trained["mlflow"]["reused"]:
            skipped.append("MLflow training run (already logged)")

        evaluation = evaluate_mod.with_runner(params)(
            trained["model_dir"], params_path, overrides,
            datasets=list(params.evaluation.targets), train_run_id=trained["mlflow"]["run_id"],
        )
        skipped += [f"evaluation of {n} (cache hit)" for n in evaluation["cached"]]
        if evaluation["mlflow"]["reused"]:
            skipped.append("MLflow evaluation run (already logged)")

        from flows import tasks

        registered = tasks.register_model(params, trained["mlflow"]["run_id"], evaluation["mlflow"]["run_id"])
        if not registered["created"]:
            skipped.append(f"registration (v{registered['version']} already registered)")
        gate = tasks.promotion_gate(params, registered["version"], str(Path(evaluation["out_dir"]) / "champion"))
        if gate["reused"]:
            skipped.append(f"promotion gate (v{registered['version']} already decided: {gate['verdict']})")

    summary = {
        "version": registered["version"],
        "verdict": gate["verdict"],
        "champion": gate["champion"],
        "report": evaluation["report"],
        "results": str(Path(evaluation["out_dir"]) / "results.md"),
        "train_run_id": trained["mlflow"]["run_id"],
        "eval_run_id": evaluation["mlflow"]["run_id"],
        "run_dir": trained["run_dir"],
        "random_init": bool(trained["backbone"].get("random_init")),
        "fallback_reason": trained["backbone"].get("fallback_reason"),
        "backbone": trained["backbone"].get("name"),
        "data": {n: r["version"] for n, r in data.items()},
        "target_means": evaluation["target_means"],
        "skipped": skipped,
        "decision_markdown": gate["markdown"],
    }
    publish_markdown(
        "entroad-retrain",
        summary_markdown(evaluation) + "\n" + (gate["markdown"] or "") + "\n"
        + ("**Skipped (already done):** " + "; ".join(skipped) if skipped else "Nothing was skipped."),
        f"EntroAD retrain: v{registered['version']} {gate['verdict']}",
    )
    log.info("v%s %s; champion v%s; report %s", registered["version"], gate["verdict"], gate["champion"], evaluation["report"])
    return summary
