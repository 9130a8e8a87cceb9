"""``python -m flows``: run the Prefect flows from the repository root.

    python -m flows quickstart        # the whole pipeline on the bundled sample data
    python -m flows retrain           # ingest -> train -> evaluate -> register -> promote
    python -m flows serve             # scheduled retraining (cron from params.yaml)
    python -m flows deploy --pool P   # deployments for a Prefect server with workers
    python -m flows predict MODEL -i DIR -o OUT [--dask ADDRESS]   # score a site folder
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

# Task results (the cross-run cache) live in this checkout, not in ~/.prefect: two checkouts on
# one machine must not serve each other's cached results, which name their own folders.
# Set before anything imports prefect, which reads its settings once at import.
os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(Path.cwd() / ".prefect" / "storage"))

import typer  # noqa: E402

from flows.console import console, print_summary, run_or_exit, ui_lines  # noqa: E402

app = typer.Typer(
    name="python -m flows",
    help="EntroAD-Pipeline Prefect flows (run from the repository root; local Prefect unless PREFECT_API_URL is set).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ParamsOpt = typer.Option("params.yaml", "--params", "-p", help="params.yaml to read.")
SetOpt = typer.Option(None, "--set", "-s", help="Override one key, e.g. --set train.epochs=3 (repeatable).")

@app.command()
def quickstart(params: str = ParamsOpt) -> None:
    """Run the whole pipeline on the bundled sample data with the embedded defaults (local
    Prefect, MLflow in mlflow/, DVC with its local remote); a second run is mostly cache hits."""
    from flows.retrain import retrain_flow

    if not Path(params).is_file():
        console.print(f"[red]error:[/] {params} not found: run this from the repository root")
        sys.exit(2)
    console.rule("[bold]EntroAD quickstart")
    console.print("ingest sample data (DVC) -> train -> cross-domain evaluation -> MLflow registry -> promotion gate")
    t0 = time.perf_counter()
    summary = run_or_exit(retrain_flow, params)
    print_summary(summary, time.perf_counter() - t0)


@app.command()
def retrain(
    params: str = ParamsOpt,
    overrides: list[str] | None = SetOpt,
    force_ingest: bool = typer.Option(False, "--force-ingest", help="Re-ingest every dataset even if unchanged."),
    push: bool = typer.Option(True, "--push/--no-push", help="Push the processed data to the DVC remote."),
) -> None:
    """The pipeline: ingest what changed -> train -> cross-domain evaluate -> register -> promotion gate."""
    from flows.retrain import retrain_flow

    t0 = time.perf_counter()
    summary = run_or_exit(retrain_flow, params, overrides or [], force_ingest=force_ingest, push=push)
    print_summary(summary, time.perf_counter() - t0)


@app.command()
def ingest(
    names: list[str] | None = typer.Argument(None, help="Datasets (default: train.dataset + evaluation.targets)."),
    params: str = ParamsOpt,
    overrides: list[str] | None = SetOpt,
    force: bool = typer.Option(False, "--force", help="Re-ingest even if unchanged."),
    push: bool = typer.Option(True, "--push/--no-push", help="Push to the DVC remote afterwards."),
) -> None:
    """Ingest datasets through their DVC stages (unchanged ones are skipped)."""
    from flows.ingest import ingest_flow

    res = run_or_exit(ingest_flow, params, overrides or [], datasets=names or None, force=force, push=push)
    for name, r in res.items():
        console.print(f"{name}: {'unchanged' if r['skipped'] else 'ingested'} ({r['version']})")


@app.command()
def train(params: str = ParamsOpt, overrides: list[str] | None = SetOpt) -> None:
    """Train on train.dataset (cached on data + params) and log the model to MLflow."""
    from flows.train import train_flow

    info = run_or_exit(train_flow, params, overrides or [])
    console.print(f"model: {info['model_dir']} ({'cache hit' if info['cached'] else 'trained'}); "
                  f"MLflow run {info['mlflow']['run_id']}")


@app.command()
def evaluate(
    model: str = typer.Argument(..., help="Checkpoint folder or MLflow URI (models:/entroad@champion)."),
    data: list[str] | None = typer.Option(None, "--data", "-d", help="Dataset (repeatable; default evaluation.targets)."),
    params: str = ParamsOpt,
    overrides: list[str] | None = SetOpt,
) -> None:
    """Cross-domain evaluation fanned out over datasets (threads or Dask, see orchestration.*)."""
    from flows.common import read_params
    from flows.evaluate import with_runner

    p = run_or_exit(read_params, params, overrides or [])
    res = run_or_exit(with_runner(p), model, params, overrides or [], datasets=data or None)
    console.print(f"report: {res['report']} (cache hits: {', '.join(res['cached']) or 'none'})")


@app.command()
def predict(
    model: str = typer.Argument(..., help="Checkpoint folder or MLflow URI (models:/entroad@champion)."),
    input_path: str = typer.Option(..., "--input", "-i", help="Folder of images or DICOM series to score."),
    out: str = typer.Option(..., "--out", "-o", help="Output folder (scores.csv, shards/, overlays/)."),
    threshold: str | None = typer.Option(None, "--threshold", "-t", help="A number, 'model', or a results.json."),
    dask: str | None = typer.Option(
        None, "--dask", help="local, local:N or a scheduler address (default: orchestration.dask_address; unset: one process)."
    ),
    params: str = ParamsOpt,
    overrides: list[str] | None = SetOpt,
) -> None:
    """Score a site folder (resumable), on Dask when an address is given or configured."""
    from flows.predict import predict_flow

    res = run_or_exit(predict_flow, model, input_path, out, params, overrides or [], threshold=threshold, dask=dask)
    console.print(f"scored {res['scored']} of {res['total']} ({res['already_done']} already done, "
                  f"{res['unreadable']} unreadable): {res['scores']}", soft_wrap=True)


@app.command()
def serve(params: str = ParamsOpt, overrides: list[str] | None = SetOpt) -> None:
    """Scheduled retraining: serve the retrain deployment on schedule.cron of params.yaml.

    Needs a Prefect server (`prefect server start`, then `prefect config set
    PREFECT_API_URL=http://127.0.0.1:4200/api`). Runs fire only while this process and the
    server both run; see them in the Prefect UI under Deployments -> entroad-retrain. Ctrl-C
    stops serving. Details: flows/README.md.
    """
    from flows.deploy import serve_retrain

    run_or_exit(serve_retrain, params, overrides or [])


@app.command()
def deploy(
    pool: str = typer.Option(..., "--pool", help="Prefect work pool (type process) whose workers run the flows."),
    params: str = ParamsOpt,
    overrides: list[str] | None = SetOpt,
    source: str | None = typer.Option(None, "--source", help="Code for the workers: a folder (default: here) or a git URL."),
    cron: str | None = typer.Option(None, "--cron", help="Override schedule.cron for the retrain deployment."),
) -> None:
    """Register the ingest, retrain (on its cron) and evaluate deployments with a work pool.

    Needs PREFECT_API_URL pointing at a Prefect server (`make stack` prints it); start workers
    with `prefect worker start --pool NAME`. README: "From one checkout to a team".
    """
    from flows.deploy import deploy_all

    for name in run_or_exit(deploy_all, pool, params, overrides or [], source, cron):
        console.print(f"deployed {name}")


@app.command()
def ui() -> None:
    """Print the commands that open the MLflow and Prefect UIs."""
    for line in ui_lines():
        console.print(line, soft_wrap=True)


if __name__ == "__main__":
    app()
