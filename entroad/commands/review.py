"""CLI: ``entroad review PREDICTIONS_DIR`` (the review page) and ``entroad review export``."""

from __future__ import annotations

import getpass
import os
import secrets
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from entroad.commands._common import ParamsOpt, SetOpt, params_from_cli

TOKEN_ENV = "ENTROAD_REVIEW_TOKEN"
REVIEWER_ENV = "ENTROAD_REVIEWER"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
console = Console()


class _DefaultServe(TyperGroup):
    """``entroad review DIR`` means ``entroad review serve DIR``; ``export`` stays a verb."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["serve", *args]
        return super().parse_args(ctx, args)


review_app = typer.Typer(
    cls=_DefaultServe, no_args_is_help=True, rich_markup_mode="markdown",
    help="Review flagged images in a local web page; export the verdicts as a versioned dataset.\n\n"
    "`entroad review PREDICTIONS_DIR` serves the page · `entroad review export PREDICTIONS_DIR --dataset NAME`.",
)


def _maps(model: str | None, meta_source: str | None, params: Path | None, overrides: list[str] | None):
    """The map renderer for the model that made the predictions, when it can be found."""
    from entroad.model_source import is_mlflow_uri
    from entroad.review.maps import ModelMaps

    source = model or meta_source
    if not source or not (is_mlflow_uri(source) or Path(source).expanduser().exists()):
        return None
    return ModelMaps(source, params_from_cli(params, overrides))


@review_app.command("serve")
def serve_cmd(
    predictions: Path = typer.Argument(..., help="Folder written by `entroad predict` (scores.csv, predict.json, overlays/)."),
    host: str = typer.Option("127.0.0.1", "--host", help=f"Address to listen on. Anything but loopback needs the token (${TOKEN_ENV}, else generated and printed once)."),
    port: int = typer.Option(8765, "--port", help="Port (0 = any free port)."),
    reviewer: str = typer.Option(None, "--reviewer", help=f"Default reviewer name shown in the page (default: ${REVIEWER_ENV} or your login)."),
    model: str = typer.Option(None, "--model", "-m", help="Model for the entropy/routing/confidence maps (default: the one named in predict.json, if present)."),
    params: Path = ParamsOpt,
    overrides: list[str] = SetOpt,
) -> None:
    """Serve the review page: a queue sorted by score or uncertainty, keyboard verdicts (a/n/s/u, ←/→) saved at once to PREDICTIONS_DIR/.review/verdicts.jsonl."""
    from werkzeug.serving import make_server

    from entroad.review.app import create_app
    from entroad.review.queue import PredictionQueue

    name = reviewer or os.environ.get(REVIEWER_ENV) or getpass.getuser()
    token = os.environ.get(TOKEN_ENV) or None
    generated = False
    if host not in LOOPBACK and not token:
        token, generated = secrets.token_urlsafe(24), True
    queue = PredictionQueue(predictions)
    maps = _maps(model, queue.meta.get("model", {}).get("source"), params, overrides)
    app = create_app(queue.folder, name, token=token, maps=maps)
    server = make_server(host, port, app, threaded=True)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{server.server_port}/"
    console.print(f"{len(queue.items)} predictions, verdicts in {escape(str(queue.folder / '.review'))}", soft_wrap=True)
    if token:
        console.print(f"Review page: {url}?token={token}" if generated else f"Review page: {url} (token from ${TOKEN_ENV})",
                      soft_wrap=True, highlight=False)
    else:
        console.print(f"Review page: {url}", soft_wrap=True, highlight=False)
    if maps is None:
        console.print("maps: off (pass --model to show entropy, routing and confidence maps)")
    try:
        server.serve_forever()
    finally:
        server.server_close()


@review_app.command("export")
def export_cmd(
    predictions: Path = typer.Argument(..., help="The reviewed predictions folder."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Name of the new dataset (datasets/raw/NAME, params.yaml entry)."),
    conflicts: str = typer.Option("exclude", "--conflicts", help="When reviewers disagree: exclude (left out) | latest | anomalous (any anomalous verdict wins)."),
    target: bool = typer.Option(False, "--target", help="Also add NAME to evaluation.targets, so the promotion gate weighs it."),
    ingest: bool = typer.Option(True, "--ingest/--no-ingest", help="Ingest (version) the dataset right away."),
    dvc: bool = typer.Option(None, "--dvc/--no-dvc", help="Ingest through `dvc repro` (default: when the repo has the stage)."),
    params: Path = ParamsOpt,
) -> None:
    """Write the verdicts as datasets/raw/NAME (folder layout, masks from the marks), add it to params.yaml and ingest it."""
    from entroad.review.export import export_review

    res = export_review(predictions, dataset, params_path=params, rule=conflicts, target=target, ingest=ingest, use_dvc=dvc)
    c = res.counts
    console.print(escape(f"{res.name}: {c['anomalous']} anomalous ({c['with_mask']} with a mask), {c['normal']} normal "
                         f"-> {res.raw_dir}"), soft_wrap=True)
    if res.conflicts:
        console.print(f"{len(res.conflicts)} conflict(s); rule '{conflicts}' left out {len(res.excluded)}")
    console.print("params.yaml: entry added" if res.params_entry_added else "params.yaml: entry already present")
    if res.version:
        console.print(escape(f"ingested: {res.processed_dir} (version {res.version})"), soft_wrap=True)
        console.print(f"next: entroad evaluate --model MODEL --data {res.name}")


def register(app: typer.Typer) -> None:
    app.add_typer(review_app, name="review")
