"""CLI: ``entroad evaluate`` (cross-domain metrics, report, ablations) and ``entroad predict``."""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from entroad.commands._common import ParamsOpt, SetOpt, params_from_cli
from entroad.errors import InputError

log = logging.getLogger("entroad.cli")
# Logs and CI (no terminal) get wide, unfolded tables; a terminal keeps its own width.
console = Console(width=None if sys.stdout.isatty() else 160)

ModelOpt = typer.Option(
    ..., "--model", "-m",
    help="Checkpoint folder (…/model), training folder, or MLflow URI (models:/entroad@champion, "
    "models:/entroad/VERSION, runs:/<id>/model); `entroad inspect` takes the same forms.",
)


def _split_names(values: list[str] | None) -> list[str]:
    return [n.strip() for v in values or [] for n in v.split(",") if n.strip()]


def _metric_table(title: str, rows: list[dict], keys: list[str], first: list[str]) -> Table:
    from entroad.evaluation.tables import SHORT

    t = Table(title=title, title_justify="left")
    for c in first:  # names wrap rather than being cut to "mvtec…" on a narrow terminal
        t.add_column(c, overflow="fold")
    for k in keys:
        t.add_column(SHORT[k], justify="right", no_wrap=True)
    for r in rows:
        t.add_row(*(escape(str(r[c])) for c in first), *("—" if r[k] is None else f"{r[k]:.1f}" for k in keys))
    return t


def evaluate_cmd(
    model: str = ModelOpt,
    data: list[str] | None = typer.Option(
        None, "--data", "-d", help="Processed dataset name or folder (repeatable, or comma-separated)."
    ),
    suite: str | None = typer.Option(None, "--suite", help="Named protocol from evaluation.suites (e.g. industrial)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default: runs/evaluate/<time>)."),
    ablate: str | None = typer.Option(
        None, "--ablate",
        help="Also evaluate variants: entropy=none,routing=none (one per item; join options with +).",
    ),
    split: str | None = typer.Option(None, "--split", help="Override evaluation.split (test|train|all)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Override evaluation.batch_size."),
    specificity: float | None = typer.Option(None, "--specificity", help="Operating point: target specificity (0-1)."),
    sensitivity: float | None = typer.Option(None, "--sensitivity", help="Operating point: target sensitivity (0-1)."),
    pixel_metrics: str | None = typer.Option(None, "--pixel-metrics", help="auto | exact | binned."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:N (default: backbone.device)."),
    weights: str | None = typer.Option(None, "--weights", help="Backbone weights file, if not where training found it."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write report.html/report.md and figures."),
    save_operating_point: str | None = typer.Option(
        None, "--save-operating-point",
        help="Store DATASET's operating point in the (local) checkpoint folder for `predict --threshold model`.",
    ),
    track: bool = typer.Option(
        False, "--track",
        help="Log this evaluation in MLflow under the model's training run and make it the evaluation "
        "`compare` and `promote` judge its registry version on (a tracked, unregistered model is registered).",
    ),
    params: Path | None = ParamsOpt,
    overrides: list[str] | None = SetOpt,
) -> None:
    """Evaluate a model zero-shot on unseen datasets: metrics per class and per dataset,
    results.{csv,json,md}, scores.csv and an HTML + Markdown report with figures."""
    extra = list(overrides or [])
    for key, val in (("split", split), ("batch_size", batch_size), ("specificity", specificity),
                     ("sensitivity", sensitivity), ("pixel_metrics", pixel_metrics)):
        if val is not None:
            extra.append(f"evaluation.{key}={val}")
    names = _split_names(data)
    op_dir = _check_operating_point_target(model, save_operating_point, names, suite)  # before any work
    p = params_from_cli(params, extra)
    target = None
    if track:
        from entroad.tracking.evaluation_link import locate

        target = locate(p, model)  # a model that cannot reach the registry fails before evaluating
    from entroad.backbone import random_init_shown
    from entroad.evaluation.engine import evaluate
    from entroad.evaluation.metrics import METRIC_KEYS

    out_dir = out or Path("runs") / "evaluate" / datetime.now().strftime("%Y%m%d-%H%M%S")
    result = evaluate(
        model, names or None, p, out_dir, suite=suite, ablations=ablate, device=device,
        weights=weights, report=report,
    )
    if result.random_init and not random_init_shown():
        console.print("[bold red]RANDOM-INIT BACKBONE[/]: these numbers say nothing about real anomaly detection.")
    console.print(_metric_table("Per dataset (%, mean over classes)", result.per_dataset_table(), list(METRIC_KEYS), ["dataset"]))
    for d in result.datasets:
        for note in d.notes:
            console.print(f"[yellow]{escape(d.name)}[/]: {escape(note)}")
    if result.variants:
        console.print(_metric_table("Ablation", result.ablation_table(), list(METRIC_KEYS), ["variant", "dataset"]))
    if op_dir is not None:
        from entroad.predict.operating_point import save_operating_point as save_op

        path = save_op(result, op_dir, save_operating_point)
        saved = next(d for d in result.datasets if d.name == save_operating_point)
        console.print(escape(f"operating point of {save_operating_point} saved: {path}"), soft_wrap=True)
        print_operating_point(saved.operating_point.to_json())
    console.print(escape(f"results: {out_dir}/results.md" + (f", report: {out_dir}/report.html" if report else "")), soft_wrap=True)
    if target is not None:
        from entroad.tracking.evaluation_link import link, next_steps

        linked = link(p, target, result, out_dir)
        name = p.tracking.registered_model
        what = "registered as" if linked.registered else "linked to"
        console.print(escape(f"MLflow evaluation run {linked.eval_run_id}, {what} {name} v{linked.version}"
                             + (" (@champion)" if linked.is_champion else "")), soft_wrap=True)
        console.print("next:")
        for line in next_steps(p, linked):
            console.print(escape(f"  {line}"), soft_wrap=True)


def print_operating_point(op: dict) -> None:
    """Threshold, sensitivity and specificity with their counts; low rates in red."""
    from entroad.predict.operating_point import describe

    for line in describe(op):
        console.print(f"[bold red]{escape(line)}[/]" if line.startswith("WARNING") else f"  {escape(line)}", soft_wrap=True)


def _check_operating_point_target(model: str, dataset: str | None, names: list[str], suite: str | None) -> Path | None:
    """The checkpoint folder ``--save-operating-point`` writes to, checked before evaluating."""
    if not dataset:
        return None
    from entroad.model_source import find_checkpoint_dir, is_mlflow_uri

    if is_mlflow_uri(model):
        raise InputError(
            f"--save-operating-point stores the point in a local checkpoint folder; {model} is an MLflow URI. "
            f"Evaluate without it and pass that evaluation to predict instead: "
            f"`entroad predict --model {model} --threshold OUT/results.json --threshold-dataset {dataset} ...`"
        )
    # a folder given as --data is named by its manifest, known only once loaded: check plain names only
    if names and dataset not in names and not any("/" in n or Path(n).is_dir() for n in names):
        raise InputError(f"--save-operating-point {dataset}: not among the evaluated datasets ({', '.join(names)})")
    if not Path(model).expanduser().exists():
        return None  # the evaluation reports the missing folder with its own hint
    return find_checkpoint_dir(Path(model).expanduser())


def predict_cmd(
    model: str = ModelOpt,
    input_path: Path = typer.Option(..., "--input", "-i", help="Folder of images (searched recursively), a DICOM folder, or one image."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (scores.csv, overlays/, predict.json)."),
    threshold: str | None = typer.Option(
        None, "--threshold", "-t",
        help="Flag images with score > THRESHOLD: a number, 'model' (the model's saved operating point), "
        "or an evaluation results.json / operating_point.json.",
    ),
    threshold_dataset: str | None = typer.Option(None, "--threshold-dataset", help="Which dataset's operating point to use from a results.json."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Override evaluation.batch_size."),
    overlays: bool = typer.Option(True, "--overlays/--no-overlays", help="Write overlay PNGs."),
    restart: bool = typer.Option(False, "--restart", help="Discard earlier scores in --out instead of resuming."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:N (default: backbone.device)."),
    weights: str | None = typer.Option(None, "--weights", help="Backbone weights file, if not where training found it."),
    dask: str | None = typer.Option(
        None, "--dask",
        help="Score on Dask: 'local' / 'local:N' (N worker processes here) or a scheduler address (tcp://host:8786). "
        "Inputs, --out and the model must be on storage every worker sees.",
    ),
    shard_size: int | None = typer.Option(None, "--shard-size", min=1, help="Images per Dask task (with --dask; default 256)."),
    params: Path | None = ParamsOpt,
    overrides: list[str] | None = SetOpt,
) -> None:
    """Score unlabelled images for a site: scores.csv (pseudonymous ids for DICOM), overlay PNGs,
    optional threshold. Rerunning on the same --out resumes (already-scored files are skipped)."""
    p = params_from_cli(params, overrides)
    from entroad.predict.run import predict

    res = predict(
        model, input_path, out, params=p, threshold=threshold, threshold_dataset=threshold_dataset,
        batch_size=batch_size, overlays=overlays, restart=restart, device=device, weights=weights,
        dask=dask, shard_size=shard_size,
    )
    from entroad.backbone import random_init_shown

    if res.random_init and not random_init_shown():
        console.print("[bold red]RANDOM-INIT BACKBONE[/]: scores say nothing about real anomaly detection.")
    msg = f"scored {res.n_scored} image(s), {res.n_skipped} already done"
    if res.shards_total:
        msg += f" ({res.shards_run} of {res.shards_total} shards run)"
    if res.failures:
        msg += f", {len(res.failures)} unreadable (see {res.out_dir / 'failures.csv'})"
    if res.threshold is not None:
        import csv

        with open(res.scores_csv, newline="") as f:
            flagged = sum(row["flagged"] == "1" for row in csv.DictReader(f))
        msg += f"; {flagged} flagged (score > {res.threshold:.6g}, from {res.threshold_source})"
    console.print(escape(msg), soft_wrap=True)  # no hard wraps inside paths; "[...]" is text, not markup
    if res.operating_point is not None:
        print_operating_point(res.operating_point)
    console.print(escape(f"scores: {res.scores_csv}"), soft_wrap=True)


EVALUATE_EXAMPLES = (
    "Examples:\n\n"
    "entroad evaluate -m runs/train/model -d sample-surfaces -d sample-ct-mr\n\n"
    "entroad evaluate -m models:/entroad@champion --suite industrial --ablate entropy=none,routing=none\n\n"
    "Without masks a dataset gets image metrics only; with (almost) only anomalous images, pixel "
    "metrics only (the report says why). Suites and defaults: the evaluation section of params.yaml."
)
PREDICT_EXAMPLES = (
    "Examples:\n\n"
    "entroad predict -m runs/train/model -i /data/line3 -o runs/predict/line3 --threshold 0.62\n\n"
    "entroad predict -m models:/entroad@champion -i /exports/ct-study -o out/ct --threshold model\n\n"
    "entroad predict -m runs/train/model -i /archive/site -o /shared/out/site --dask tcp://scheduler:8786\n\n"
    "DICOM folders are de-identified on the fly: ids are salted pseudonyms, no header value is written. "
    "With --dask, a rerun of the same command scores only the shards not yet in --out/shards."
)


def register(app: typer.Typer) -> None:
    app.command("evaluate", epilog=EVALUATE_EXAMPLES)(evaluate_cmd)
    app.command("predict", epilog=PREDICT_EXAMPLES)(predict_cmd)
