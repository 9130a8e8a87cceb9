"""Options shared by the CLI verbs (params file and --set overrides)."""

from __future__ import annotations

from pathlib import Path

import typer

from entroad.config import Params, load_params

ParamsOpt = typer.Option(
    None, "--params", "-p", help="params.yaml to read (default: ./params.yaml).", exists=False
)
SetOpt = typer.Option(
    None, "--set", "-s", help="Override one key, e.g. --set model.entropy=1d (repeatable)."
)


def params_from_cli(params: Path | None, overrides: list[str] | None) -> Params:
    return load_params(params, overrides or [])
