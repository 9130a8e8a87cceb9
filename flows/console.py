"""What ``python -m flows`` prints: the retrain summary, the UI commands, one-line errors."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console

from entroad.errors import EntroADError
from entroad.tracking import store
from flows.common import read_params, relpath

console = Console(soft_wrap=True)  # paths and commands stay on one line (copy-paste)

REAL_WEIGHTS_HELP = (
    "To use real CLIP weights: `entroad weights fetch --name ViT-L-14-336 --tag openai` (with network), or on an "
    "air-gapped machine `entroad weights import PATH --name ViT-L-14-336 --tag openai`; then set "
    "`backbone.random_init_fallback: false` in params.yaml and run `make quickstart` again."
)


def ui_lines() -> list[str]:
    return store.ui_lines(read_params())


def print_summary(s: dict[str, Any], seconds: float) -> None:
    console.rule("[bold]EntroAD retrain finished")
    verdict = s["verdict"].replace("_", " ")
    console.print(f"model version [bold]v{s['version']}[/]: {verdict}; [bold green]@champion = v{s['champion']}[/]")
    means = ", ".join(f"{k} {v:.1f}" for k, v in s["target_means"].items() if k in {"image_auroc", "pixel_auroc", "pixel_aupro"})
    console.print(f"target-domain means (%): {means or '—'}")
    console.print(f"report:  {relpath(s['report'])}")
    console.print(f"results: {relpath(s['results'])}")
    if s["skipped"]:
        console.print(f"[cyan]skipped (already done, {len(s['skipped'])}):[/]")
        for item in s["skipped"]:
            console.print(f"  - {item}")
    else:
        console.print("nothing was skipped (first run with this data + params)")
    if s["random_init"]:
        console.print(
            f"[bold yellow]NOTE:[/] the tiny RANDOM-INIT backbone [bold]{s['backbone']}[/] was used because no pretrained "
            "weights were found, so the scores only show that the pipeline works."
        )
        if s.get("fallback_reason"):
            console.print(f"  why: {s['fallback_reason']}", soft_wrap=True)
        console.print(f"  {REAL_WEIGHTS_HELP}", soft_wrap=True)
    for line in ui_lines():
        console.print(line, soft_wrap=True)
    console.print(f"done in {seconds:.0f} s")


def run_or_exit(fn, *args, **kwargs) -> Any:
    try:
        return fn(*args, **kwargs)
    except EntroADError as e:
        console.print(f"[red]error:[/] {e}", soft_wrap=True)
        sys.exit(e.exit_code)
