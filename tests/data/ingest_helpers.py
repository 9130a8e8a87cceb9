"""Helpers of the ingestion tests: real image files, ingest calls, real DVC projects."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from entroad.config import DatasetSpec
from entroad.data.ingest import IngestResult, ingest_spec
from entroad.data.manifest import ProcessedDataset

REPO_ROOT = Path(__file__).resolve().parents[2]


def rgb(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(arr: np.ndarray, path: Path, **kw: Any) -> Path:
    """Write ``arr`` with Pillow (uint16 -> 16-bit PNG, HxWx4 -> RGBA, HxW -> grayscale)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def mask(h: int = 24, w: int = 32, value: int = 255, box: tuple[int, int, int, int] = (4, 4, 10, 12)) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    y0, x0, y1, x1 = box
    m[y0:y1, x0:x1] = value
    return m


def ingest(tmp_path: Path, fmt: str, source: Path, name: str = "ds", domain: str | None = None,
           force: bool = False, **options: Any) -> tuple[IngestResult, ProcessedDataset]:
    spec = DatasetSpec(name=name, format=fmt, source=str(source), domain=domain, options=options)
    res = ingest_spec(spec, tmp_path / "processed" / name, tmp_path, force=force, progress=False)
    return res, ProcessedDataset.load(res.path)


def by_source(ds: ProcessedDataset) -> dict[str, Any]:
    return {r.source_id: r for r in ds.records}


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def make_dvc_project(path: Path, params_text: str) -> Path:
    """A real git + DVC project using this checkout's dvc.yaml and an own params.yaml."""
    path.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e", "DVC_NO_ANALYTICS": "1"}
    _run(["git", "init", "-q"], path, env)
    shutil.copy(REPO_ROOT / "dvc.yaml", path / "dvc.yaml")
    shutil.copy(REPO_ROOT / ".dvcignore", path / ".dvcignore")
    (path / "params.yaml").write_text(params_text)
    # The stage deps name the ingestion code by path: copy it in (the command itself runs
    # the installed package).
    shutil.copytree(REPO_ROOT / "entroad" / "data", path / "entroad" / "data",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (path / ".gitignore").write_text("/datasets/raw/\n/datasets/.cache/\n/datasets/.deid_salt\n")
    _run(["git", "add", "-A"], path, env)
    _run(["git", "commit", "-q", "-m", "init"], path, env)
    _run([sys.executable, "-m", "dvc", "init", "-q"], path, env)
    _run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], path, env)
    return path
