"""A self-hosted Prefect server (database on the stack's PostgreSQL), a process work pool and
workers. Started as commands, so the library never imports Prefect."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from entroad.stack.processes import Server, StackError, start, wait_until


def _exe() -> str:
    exe = Path(sys.executable).parent / "prefect"
    if not exe.exists():
        raise StackError("the prefect command is not installed in this environment: `pip install -e .`")
    return str(exe)


def server_env(base: dict[str, str], home: Path, db_url: str | None, api_url: str) -> dict[str, str]:
    env = {**base, "PREFECT_HOME": str(home), "PREFECT_API_URL": api_url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    if db_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = db_url
    return env


def start_prefect(port: int, env: dict[str, str], log: Path) -> Server:
    return start("Prefect server", [_exe(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                 log, env=env)


def wait_prefect(api_url: str, server: Server | None, timeout: float = 240.0) -> None:
    import requests

    wait_until(lambda: requests.get(api_url + "/health", timeout=3).ok, timeout, f"Prefect server on {api_url}",
               server.log if server else None, server.proc if server else None)


def ensure_pool(pool: str, env: dict[str, str]) -> None:
    """A work pool of type process (``prefect work-pool create``; an existing one is kept)."""
    res = subprocess.run([_exe(), "work-pool", "create", pool, "--type", "process"], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    if res.returncode != 0 and "already exists" not in (res.stdout + res.stderr):
        raise StackError(f"cannot create Prefect work pool {pool!r}: {(res.stdout + res.stderr).strip()[-500:]}")


def start_worker(pool: str, env: dict[str, str], log: Path, cwd: Path, name: str) -> Server:
    """``prefect worker start`` in the checkout (flow runs start from ``cwd``)."""
    return start(f"Prefect worker {name}", [_exe(), "worker", "start", "--pool", pool, "--type", "process",
                                             "--name", name], log, env=env, cwd=cwd)
