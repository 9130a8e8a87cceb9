"""DVC commands used by ingest and ``entroad data``: repro, status, push/pull, remote setup.

DVC runs as a subprocess (``python -m dvc`` of this interpreter, its ``bin/`` first on PATH
so the stage command ``entroad ingest`` resolves to the same install). DVC holds a repo
lock, so every call here goes through one process-wide file lock: concurrent callers
(threads, Prefect tasks) queue instead of failing with "Unable to acquire lock".
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from entroad.config import Params, load_params
from entroad.data.versioning import data_version, find_dvc_root
from entroad.errors import VersioningError

log = logging.getLogger(__name__)

STAGE = "ingest"
DEFAULT_REMOTE_NAME = "entroad-local"
DEFAULT_REMOTE_URL = "~/.cache/entroad/dvc-remote"  # DVC expands ~ itself


def stage_name(name: str) -> str:
    return f"{STAGE}@{name}"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("DVC_STAGE", None)
    return env


@contextlib.contextmanager
def repo_lock(repo: Path) -> Iterator[None]:
    path = repo / ".dvc" / "tmp" / "entroad.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run_dvc(repo: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``dvc <args>`` in ``repo`` under the lock; raise VersioningError on failure."""
    cmd = [sys.executable, "-m", "dvc", *args]
    with repo_lock(repo):
        proc = subprocess.run(cmd, cwd=repo, env=env or _env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise VersioningError(f"`dvc {' '.join(args)}` failed in {repo}:\n{tail}")
    return proc


def has_ingest_stage(repo: Path) -> bool:
    path = repo / "dvc.yaml"
    if not path.is_file():
        return False
    try:
        stages = (yaml.safe_load(path.read_text()) or {}).get("stages") or {}
    except yaml.YAMLError:
        return False
    stage = stages.get(STAGE) or {}
    return isinstance(stage, dict) and "foreach" in stage


def ingest_repo(params: Params, name: str, use_dvc: bool | None) -> Path | None:
    """The DVC repo to run ``ingest@name`` in, or None to ingest directly (see ingest.py)."""
    if use_dvc is False or os.environ.get("DVC_STAGE"):
        return None
    repo = find_dvc_root(Path.cwd())
    why = None
    if repo is None:
        why = "this is not a DVC repository (run `dvc init` in a git repository)"
    elif not has_ingest_stage(repo):
        why = f"{repo / 'dvc.yaml'} has no `{STAGE}` foreach stage"
    else:
        repo_params = load_params(repo / "params.yaml")
        if repo_params.data.root != params.data.root or name not in {d.name for d in repo_params.data.datasets}:
            why = f"dataset {name!r} is not configured in {repo / 'params.yaml'}"
        elif repo_params.data.get(name) != params.data.get(name):
            why = f"the settings of {name!r} differ from {repo / 'params.yaml'} (--params/--set)"
    if why is None:
        return repo
    if use_dvc:
        raise VersioningError(f"cannot ingest {name!r} through DVC: {why}")
    log.debug("ingesting %s without DVC: %s", name, why)
    return None


def repro_ingest(repo: Path, name: str, dest: Path, force: bool = False) -> Any:
    """``dvc repro ingest@<name>``; DVC skips it when deps and params are unchanged."""
    return repro_ingest_many(repo, {name: dest}, force=force)[0]


def repro_ingest_many(repo: Path, dests: dict[str, Path], force: bool = False) -> list[Any]:
    """One ``dvc repro ingest@a ingest@b ...`` for several datasets (one DVC start-up)."""
    import time

    from entroad.data.ingest import FORCE_ENV, IngestResult, read_audit

    def stamp(dest: Path) -> int | None:
        meta = dest / "dataset.json"
        return meta.stat().st_mtime_ns if meta.is_file() else None

    before = {n: stamp(d) for n, d in dests.items()}
    env = _env()
    # Each ingest@<name> pulls in its fingerprint@<name> stage first.
    args = ["repro", *(stage_name(n) for n in dests)]
    if force:
        env[FORCE_ENV] = "1"
        args.insert(1, "--force")
    t0 = time.perf_counter()
    proc = run_dvc(repo, *args, env=env)
    log.debug("dvc repro output:\n%s", proc.stdout)
    seconds = (time.perf_counter() - t0) / max(len(dests), 1)
    return [
        IngestResult(n, d, data_version(d), before[n] is not None and before[n] == stamp(d), read_audit(d), seconds)
        for n, d in dests.items()
    ]


def stage_status(repo: Path) -> dict[str, Any]:
    """``dvc status --json`` of every stage: {stage: [changes]} (empty = up to date)."""
    proc = run_dvc(repo, "status", "--json", check=False)
    try:
        return json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        return {}


def cloud_status(repo: Path, targets: list[str]) -> dict[str, Any] | None:
    """``dvc status --cloud --json``: {} when everything is on the remote; None when no remote."""
    proc = run_dvc(repo, "status", "--cloud", "--json", *targets, check=False)
    if proc.returncode != 0:
        return None
    try:
        return json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        return None


def default_remote(repo: Path) -> str | None:
    proc = run_dvc(repo, "remote", "default", check=False)
    name = (proc.stdout or "").strip()
    return name if proc.returncode == 0 and name and "No default remote" not in name else None


def ensure_remote(repo: Path, url: str | None = None) -> str:
    """Make sure a default remote exists: ``url`` (data.remote) or the local default folder.

    The remote goes into ``.dvc/config`` (committed) so every clone shares it; ``~`` is
    kept unexpanded there and expanded by DVC on each machine.
    """
    current = default_remote(repo)
    target = url or DEFAULT_REMOTE_URL
    if current is None:
        run_dvc(repo, "remote", "add", "--default", DEFAULT_REMOTE_NAME, target)
        if target.startswith("~") or "://" not in target:
            Path(os.path.expanduser(target)).mkdir(parents=True, exist_ok=True)
        return DEFAULT_REMOTE_NAME
    if url:
        run_dvc(repo, "remote", "modify", current, "url", url)
    return current


def push(repo: Path, targets: list[str], remote_url: str | None = None) -> str:
    ensure_remote(repo, remote_url)
    return run_dvc(repo, "push", *targets).stdout


def pull(repo: Path, targets: list[str]) -> str:
    return run_dvc(repo, "pull", *targets).stdout
