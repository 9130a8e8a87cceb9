"""CLI: ``entroad promote``, ``entroad compare``, ``entroad models``, ``entroad ui``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from entroad.commands._common import ParamsOpt, SetOpt, params_from_cli

console = Console()


def promote_cmd(
    version: str | None = typer.Option(None, "--version", "-V", help="Candidate version (default: the newest undecided version, else @challenger)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the decision and its table; change nothing."),
    reevaluate: bool = typer.Option(
        False, "--reevaluate", help="If the champion was evaluated on other data versions, re-evaluate it on the candidate's data first."
    ),
    wait: float = typer.Option(0.0, "--wait", help="Seconds to wait for a running retrain/promotion to finish."),
    params: Path | None = ParamsOpt,
    overrides: list[str] | None = SetOpt,
) -> None:
    """Run the promotion gate on a registered version (rule: promotion.* in params.yaml).

    The candidate becomes @champion only if its mean target-domain metrics beat the champion's
    by promotion.margin points and no dataset regresses by more than promotion.tolerance, both
    evaluated on the same data versions. The decision and its table are recorded on the
    version (tags + description); @challenger marks the candidate.
    """
    from entroad.tracking.gate import run_gate

    p = params_from_cli(params, overrides)
    res = run_gate(p, version, dry_run=dry_run, reevaluate=reevaluate, lock_wait_s=wait)
    if res.decision is None:
        console.print(res.message)
        return
    console.print(decision_table(res.decision))
    for reason in res.decision.reasons:
        console.print(f"  • {reason}")
    name = p.tracking.registered_model
    if dry_run:
        console.print(f"[yellow]dry run[/]: would be [bold]{res.decision.verdict}[/]; nothing recorded.")
    elif res.decision.promote:
        console.print(f"[green]v{res.candidate_version} is now {name}@champion[/] (was {_v(res.champion_before)}).")
    else:
        console.print(f"[yellow]v{res.candidate_version} not promoted[/]: {name}@champion stays {_v(res.champion_before)}.")


def _v(version: str | None) -> str:
    return f"v{version}" if version else "none"


def decision_table(decision) -> Table:
    t = Table(title=f"Promotion: {decision.candidate} vs {decision.champion or '(no champion)'} -> {decision.verdict}",
              title_justify="left")
    for col in ("dataset", "metric", "candidate", "champion", "delta", "status"):
        t.add_column(col, justify="right" if col in {"candidate", "champion", "delta"} else "left", overflow="fold")
    for r in decision.rows:
        style = "red" if r.status in {"regression", "missing"} else None
        t.add_row(r.dataset, r.metric, _num(r.candidate), _num(r.champion), _num(r.delta, True), r.status, style=style)
    if decision.candidate_mean is not None:
        t.add_row("(mean)", "+".join(decision.config.get("metrics", [])), _num(decision.candidate_mean),
                  _num(decision.champion_mean), _num(decision.mean_delta, True), "", style="bold")
    return t


def _num(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "—"
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def compare_cmd(
    refs: list[str] = typer.Argument(..., help="Versions (3, v3), aliases (@champion, @challenger) or MLflow run ids."),
    markdown: Path | None = typer.Option(None, "--markdown", "-m", help="Also write the comparison as Markdown to this file."),
    params: Path | None = ParamsOpt,
    overrides: list[str] | None = SetOpt,
) -> None:
    """Side-by-side metrics of registered versions or runs (terminal table, optional Markdown).

    Per target dataset and metric (in %, per-class mean; best in bold), the target means,
    then each model's alias, promotion decision, backbone (random-init flagged) and the data
    versions it was evaluated on. Example: entroad compare 2 @champion --markdown cmp.md
    """
    from entroad.tracking import compare, store

    p = params_from_cli(params, overrides)
    client = store.client(p)
    columns = [compare.resolve(client, p.tracking.registered_model, r) for r in refs]
    t = Table(title="EntroAD comparison (%, per-class mean)", title_justify="left")
    # fold, never cut: at 80 columns a run id or a dataset name must stay whole ("53880f…" is useless)
    t.add_column("dataset", overflow="fold")
    t.add_column("metric", overflow="fold")
    for c in columns:
        t.add_column(c.label, justify="right", overflow="fold")
    for r in compare.rows(columns):
        present = [v for v in r["values"] if v is not None]
        top = max(present) if len(set(present)) > 1 else None
        t.add_row(r["dataset"], r["metric"], *(
            "—" if v is None else (f"[bold green]{v:.2f}[/]" if v == top else f"{v:.2f}") for v in r["values"]
        ))
    t.add_section()
    for r in compare.info_rows(columns):
        t.add_row(r["dataset"], r["metric"], *(str(v) for v in r["values"]))
    console.print(t)
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(compare.to_markdown(columns))
        console.print(f"markdown: {markdown}")


def models_cmd(params: Path | None = ParamsOpt, overrides: list[str] | None = SetOpt) -> None:
    """List the registered versions with their aliases, promotion decisions and lineage."""
    from entroad.tracking import lineage, registry, store

    p = params_from_cli(params, overrides)
    client = store.client(p)
    name = p.tracking.registered_model
    found = registry.versions(client, name)
    if not found:
        console.print(f"no versions of {name!r} yet in {store.resolve(p).describe()}")
        return
    aliases = registry.aliases_of(client, name)
    t = Table(title=f"{name} ({store.resolve(p).uri})", title_justify="left")
    for col in ("version", "aliases", "decision", "Δ mean", "backbone", "random init", "created"):
        t.add_column(col, overflow="fold")
    from datetime import datetime

    for mv in reversed(found):
        tags = mv.tags
        t.add_row(
            f"v{mv.version}",
            ",".join(a for a, v in aliases.items() if v == str(mv.version)) or "",
            tags.get(registry.TAG_DECISION, "?"),
            tags.get("promotion.mean_delta", ""),
            tags.get("backbone.name", "?"),
            tags.get(lineage.TAG_RANDOM_INIT, "?"),
            datetime.fromtimestamp(mv.creation_timestamp / 1000).strftime("%Y-%m-%d %H:%M"),
        )
    console.print(t)


def ui_cmd(params: Path | None = ParamsOpt, overrides: list[str] | None = SetOpt) -> None:
    """Print the one-line commands that open the MLflow and Prefect UIs on this project's stores."""
    from entroad.tracking import store

    p = params_from_cli(params, overrides)
    for line in store.ui_lines(p):
        console.print(line, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("promote")(promote_cmd)
    app.command("compare")(compare_cmd)
    app.command("models")(models_cmd)
    app.command("ui")(ui_cmd)
