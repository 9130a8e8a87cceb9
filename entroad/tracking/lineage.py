"""Lineage tags: what every MLflow run records about where its numbers came from.

git commit (and whether the tree was dirty), the DVC data version of every dataset the run
touched, the backbone (name, tag, weights SHA-256) and a loud ``random_init_backbone`` flag.
Tag names are stable: the registry, the promotion gate and ``entroad compare`` read them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from entroad import __version__

DATA_VERSION_PREFIX = "data_version."
TAG_KIND = "entroad.kind"  # "train" | "evaluate"
TAG_TRAIN_RUN = "entroad.train_run_id"
TAG_MODEL_URI = "entroad.model_uri"
TAG_TRAIN_KEY = "entroad.train_key"
TAG_RANDOM_INIT = "random_init_backbone"
TAG_TARGETS = "entroad.datasets"
TAG_EVAL_DIR = "entroad.eval_dir"
TAG_MODEL_VERSION = "entroad.model_version"


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_state(root: str | Path | None = None) -> dict[str, str]:
    """``{"git_commit": sha, "git_dirty": "true"|"false"}`` ("unknown" outside a git checkout)."""
    base = Path(root or Path.cwd())
    sha = _git(base, "rev-parse", "HEAD")
    if not sha:
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    status = _git(base, "status", "--porcelain", "--untracked-files=no")
    return {"git_commit": sha, "git_dirty": "unknown" if status is None else str(bool(status)).lower()}


def backbone_tags(info: Any) -> dict[str, str]:
    """Tags of a :class:`entroad.backbone.BackboneInfo` (or its JSON form)."""
    d = info if isinstance(info, Mapping) else info.to_json()
    tags = {
        "backbone.name": str(d.get("name")),
        "backbone.pretrained": str(d.get("pretrained") or "none"),
        "backbone.image_size": str(d.get("image_size")),
        "backbone.weights_sha256": str(d.get("weights_sha256")),
        TAG_RANDOM_INIT: str(bool(d.get("random_init"))).lower(),
    }
    if d.get("fallback_reason"):
        tags["backbone.fallback_reason"] = str(d["fallback_reason"])[:4900]
    return tags


def data_version_tags(versions: Mapping[str, str]) -> dict[str, str]:
    return {f"{DATA_VERSION_PREFIX}{name}": str(v) for name, v in versions.items()}


def data_versions_from_tags(tags: Mapping[str, str]) -> dict[str, str]:
    return {k.removeprefix(DATA_VERSION_PREFIX): v for k, v in tags.items() if k.startswith(DATA_VERSION_PREFIX)}


def lineage_tags(
    backbone: Any, data_versions: Mapping[str, str], root: str | Path | None = None
) -> dict[str, str]:
    return {
        **git_state(root),
        **backbone_tags(backbone),
        **data_version_tags(data_versions),
        "entroad.version": __version__,
    }
