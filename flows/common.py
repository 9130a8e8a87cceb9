"""What the flows share: reading params, choosing the task runner, publishing artifacts."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

from entroad.config import Params, load_params

DEFAULT_PARAMS = "params.yaml"


def read_params(params_path: str | None = DEFAULT_PARAMS, overrides: Sequence[str] | None = None) -> Params:
    """params.yaml (relative to the working directory, the repository root) + ``--set`` overrides."""
    return load_params(params_path or DEFAULT_PARAMS, list(overrides or []))


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow/task run; a plain logger when a task's ``.fn()``
    is called directly (tests, scripts)."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("flows")


def evaluation_runner(params: Params):
    """The task runner of the evaluation fan-out (``orchestration`` in params.yaml)."""
    o = params.orchestration
    if o.task_runner == "dask":
        import dask
        from prefect_dask import DaskTaskRunner

        # evaluation uses DataLoader worker processes: Dask workers must be allowed children
        dask.config.set({"distributed.worker.daemon": False})
        if o.dask_address:
            return DaskTaskRunner(address=o.dask_address)
        return DaskTaskRunner(
            cluster_kwargs={"n_workers": o.dask_workers, "threads_per_worker": 1, "processes": True,
                            "dashboard_address": None}
        )
    return ThreadPoolTaskRunner(max_workers=o.parallel)


def artifact_key(text: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes only."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")[:100] or "entroad"


def publish_markdown(key: str, markdown: str, description: str) -> None:
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(key=artifact_key(key), markdown=markdown, description=description)


def publish_table(key: str, rows: list[dict[str, Any]], description: str) -> None:
    from prefect.artifacts import create_table_artifact

    if rows:
        create_table_artifact(key=artifact_key(key), table=rows, description=description)


def relpath(path: str | Path) -> str:
    """``path`` relative to the working directory when inside it (shorter messages)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)
