"""DVC commands: repro, status, push/pull, remote setup. It only runs DVC; ingest decides.

DVC runs as a subprocess (``python -m dvc`` of this interpreter, its ``bin/`` first on PATH
so the stage command ``entroad ingest`` resolves to the same install). DVC holds a repo
lock, so every call here goes through one process-wide file lock: concurrent callers
(threads, Prefect tasks) queue instead of failing with "Unable to acquire lock".
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from entroad.errors import StageError, VersioningError
from entroad.locks import file_lock

log = logging.getLogger(__name__)

STAGE = "ingest"
DEFAULT_REMOTE_NAME = "entroad-local"
DEFAULT_REMOTE_URL = "~/.cache/entroad/dvc-remote"  # DVC expands ~ itself


def stage_name(name: str) -> str:
    return f"{STAGE}@{name}"


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("DVC_STAGE", None)
    env.update(extra or {})
    return env


def run_dvc(repo: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``dvc <args>`` in ``repo`` under the lock; raise VersioningError on failure."""
    cmd = [sys.executable, "-m", "dvc", *args]
    with file_lock(repo / ".dvc" / "tmp" / "entroad.lock"):
        proc = subprocess.run(cmd, cwd=repo, env=env or _env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        ours = stage_error(proc.stderr or "")
        if ours:  # our own stage command failed: its reason, without DVC's wrapper lines
            raise StageError(ours)
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise VersioningError(f"`dvc {' '.join(args)}` failed in {repo}:\n{tail}")
    return proc


def stage_error(stderr: str) -> str | None:
    """The ``error: ...`` reason an ``entroad`` stage command printed (``entroad.cli`` writes
    user errors that way), up to DVC's own ``ERROR:`` lines; None when there is none."""
    lines = stderr.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith("error: ")), None)
    if start is None:
        return None
    out = [lines[start].removeprefix("error: ")]
    for ln in lines[start + 1:]:
        if ln.startswith(("ERROR:", "error: ")) or not ln.strip():
            break
        out.append(ln)
    return "\n".join(out)


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


def repro(repo: Path, names: list[str], force: bool = False, env: dict[str, str] | None = None) -> str:
    """``dvc repro ingest@a ingest@b ...`` (one DVC start-up); DVC skips unchanged stages.

    Each ``ingest@<name>`` pulls in its ``fingerprint@<name>`` stage first. ``env``: extra
    variables for the stage commands. Returns DVC's output.
    """
    args = ["repro", *(stage_name(n) for n in names)]
    if force:
        args.insert(1, "--force")
    proc = run_dvc(repo, *args, env=_env(env))
    log.debug("dvc repro output:\n%s", proc.stdout)
    return proc.stdout


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
