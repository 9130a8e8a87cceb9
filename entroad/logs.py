"""Logging setup shared by the CLI and the benchmarks (stdlib logging + rich)."""

from __future__ import annotations

import logging
import os

from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

_CONFIGURED = False


def setup_logging(verbose: bool = False) -> None:
    """Route ``entroad.*`` log records to stderr via rich; idempotent."""
    global _CONFIGURED
    level = logging.DEBUG if verbose or os.environ.get("ENTROAD_DEBUG") else logging.INFO
    logger = logging.getLogger("entroad")
    logger.setLevel(level)
    if not _CONFIGURED:
        handler = RichHandler(show_path=False, rich_tracebacks=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
        _CONFIGURED = True


def progress_bar(label: str, *extra: ProgressColumn, enabled: bool = True, transient: bool = False) -> Progress:
    """The project's progress bar: ``label`` (may use ``{task.fields[...]}``), bar, n/total,
    ``extra`` columns, elapsed and remaining time. ``enabled=False`` keeps it silent."""
    return Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), *extra, TimeElapsedColumn(), TimeRemainingColumn(),
        disable=not enabled, transient=transient,
    )
