"""Logging setup shared by the CLI and the benchmarks (stdlib logging + rich)."""

from __future__ import annotations

import logging
import os

from rich.logging import RichHandler

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
