"""CLI: ``entroad train``, ``entroad weights fetch|import|list``, ``entroad inspect``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from entroad.commands._common import ParamsOpt, SetOpt, params_from_cli

log = logging.getLogger("entroad.cli")
console = Console()
weights_app = typer.Typer(help="Manage pretrained CLIP weights (download, air-gapped import, list).", no_args_is_help=True)


def train_cmd(
    out: Path = typer.Option(Path("runs/train"), "--out", "-o", help="Training folder (checkpoints, final model/, history)."),
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Processed dataset to train on (default: train.dataset)."),
    dataset_dir: Path | None = typer.Option(None, "--dataset-dir", help="Train on a processed dataset folder instead of a configured name."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out exactly where it stopped."),
    epochs: int | None = typer.Option(None, "--epochs", help="Override train.epochs."),
    track: bool = typer.Option(True, "--track/--no-track", help="Log the run to MLflow (params, metrics, lineage)."),
    params: Path | None = ParamsOpt,
    overrides: list[str] | None = SetOpt,
) -> None:
    """Train EntroAD's learnable parts on the auxiliary dataset (METHOD.md §7).

    The backbone stays frozen. One checkpoint per epoch goes to OUT/checkpoints/, the final
    model to OUT/model/ (weights.safetensors + config.json), loss history to OUT/history.jsonl.
    """
    extra = list(overrides or [])
    if dataset:
        extra.append(f"train.dataset={dataset}")
    if epochs is not None:
        extra.append(f"train.epochs={epochs}")
    p = params_from_cli(params, extra)
    from entroad.train import train

    result = train(p, out, dataset_dir=dataset_dir, resume=resume)
    console.print(
        f"[green]trained[/] {result.epochs_run} epoch(s) on [bold]{result.dataset}[/] ({result.data_version}); "
        f"final loss {result.history[-1]['loss']:.4f}; model: {result.model_dir}"
    )
    from entroad.backbone import random_init_shown

    if result.backbone.random_init and not random_init_shown():
        console.print("[yellow]note:[/] random-init backbone (no pretrained weights) - scores are not meaningful.")
    if track:
        from entroad.tracking.runs import log_training_run

        run_id = log_training_run(p, result)
        console.print(f"MLflow run: {run_id}")


@weights_app.command("fetch")
def weights_fetch(
    name: str = typer.Option("ViT-L-14-336", "--name", help="open_clip model name."),
    tag: str = typer.Option("openai", "--tag", help="open_clip pretrained tag."),
    cache_dir: str | None = typer.Option(None, "--cache-dir", help="Cache folder (default: open_clip / HF default)."),
) -> None:
    """Download pretrained weights into the open_clip / Hugging Face cache (needs network)."""
    from entroad.backbone import fetch_weights, file_sha256

    path = fetch_weights(name, tag, cache_dir)
    console.print(f"[green]ok[/] {name}/{tag}: {path} (sha256 {file_sha256(path)})")


@weights_app.command("import")
def weights_import(
    path: Path = typer.Argument(..., help="A weights file copied from a connected machine."),
    name: str = typer.Option("ViT-L-14-336", "--name", help="open_clip model name the file belongs to."),
    tag: str = typer.Option("openai", "--tag", help="open_clip pretrained tag it stands for."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Check that the file loads into the model."),
) -> None:
    """Import a weights file for an air-gapped site (then `pretrained: TAG` just works)."""
    from entroad.backbone import file_sha256, import_weights

    dest = import_weights(path, name, tag, verify=verify)
    console.print(f"[green]imported[/] {name}/{tag} -> {dest} (sha256 {file_sha256(dest)})")


@weights_app.command("list")
def weights_list() -> None:
    """List imported weights and where EntroAD looks for weights."""
    from entroad.backbone import weights_store

    store = weights_store()
    table = Table("model", "tag", "file", "sha256")
    for meta in sorted(store.glob("*/*/weights.json")):
        info = json.loads(meta.read_text())
        table.add_row(meta.parent.parent.name, meta.parent.name, info["file"], info["sha256"][:16] + "…")
    console.print(table if table.row_count else f"no imported weights in {store}")
    console.print("Also searched: the Hugging Face cache and ~/.cache/clip (open_clip downloads).")


def inspect_cmd(
    model: str = typer.Argument(
        ..., help="Checkpoint folder, training run folder, models:/entroad@champion, models:/entroad/VERSION "
        "or runs:/<id>/model (the same forms as every --model option)."
    ),
    params: Path | None = ParamsOpt,
    overrides: list[str] | None = SetOpt,
) -> None:
    """Show a checkpoint's backbone identity, options, training data and learnable tensors."""
    from entroad.checkpoint import read_checkpoint_config
    from entroad.model_source import is_mlflow_uri, resolved_checkpoint

    p = params_from_cli(params, overrides) if is_mlflow_uri(model) else None  # a folder needs no params.yaml
    with resolved_checkpoint(model, p) as ckpt:
        cfg = read_checkpoint_config(ckpt)
    b = cfg["backbone"]
    console.print(f"[bold]backbone[/] {b['name']} ({b.get('pretrained') or 'random init'}) at {b['image_size']} px")
    console.print(f"  weights sha256: {b['weights_sha256']}")
    if b.get("random_init"):
        console.print("  [yellow]random-init backbone: outputs are not meaningful anomaly scores[/]")
    console.print(f"[bold]trained on[/] {cfg.get('trained_on', {})}")
    console.print(f"[bold]learnable[/] {cfg['learnable']['count']} parameters in {len(cfg['learnable']['tensors'])} tensors")
    console.print("[bold]options[/] " + json.dumps(cfg["model"], sort_keys=True))


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("inspect")(inspect_cmd)
    app.add_typer(weights_app, name="weights")
