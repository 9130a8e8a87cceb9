"""Data versions: where processed datasets live and which DVC hash identifies them.

``data_version(dir)`` is what lineage records (MLflow tags, reports): the md5 DVC stored
for the processed folder (``<md5>.dir``, from ``dvc.lock`` or a ``.dvc`` file) when DVC
tracks it *and* the folder still holds what DVC recorded; otherwise
``content:<sha256>`` from ``dataset.json``, so a number is always available but never
claims a DVC version the folder does not have.

The DVC commands (repro, push, status) go through :mod:`entroad.data.dvc_ops`.
:func:`dataset_dir` / :func:`dataset_version` map a dataset name to its folder and version.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import yaml

from entroad.config import Params
from entroad.data.manifest import DATASET_FILE, MANIFEST_FILE, DatasetMeta, ingest_hint
from entroad.errors import DatasetError

log = logging.getLogger(__name__)

CONTENT_PREFIX = "content:"
# Files inside a processed folder that .dvcignore excludes (exported AnomalyCLIP meta.json).
DVC_IGNORED = frozenset({"meta.json"})


def data_root(params: Params, base: str | Path | None = None) -> Path:
    """``data.root`` resolved against ``base`` (default: the current directory)."""
    root = Path(params.data.root).expanduser()
    return root if root.is_absolute() else Path(base or Path.cwd()) / root


def processed_root(params: Params) -> Path:
    """``<data.root>/processed``: the folder holding every processed dataset."""
    return data_root(params) / "processed"


def dataset_dir(params: Params, name: str) -> Path:
    """Folder of the processed dataset ``name``: ``<data.root>/processed/<name>``.

    The one place a dataset name becomes a folder. ``name`` need not be configured in
    ``data.datasets`` (a processed folder can be copied in), but it must be a plain folder name.
    """
    if not name or "/" in name or "\\" in name or name in {".", ".."}:
        raise DatasetError(f"invalid dataset name {name!r}: use a plain folder name like 'mvtec'")
    return processed_root(params) / name


def dataset_version(params: Params, name: str) -> str:
    """Data version of the processed dataset ``name`` (see :func:`data_version`)."""
    return data_version(dataset_dir(params, name))


def find_dvc_root(start: Path) -> Path | None:
    """Nearest ancestor of ``start`` (itself included) that holds a ``.dvc`` folder."""
    p = start.resolve()
    for cand in (p, *p.parents):
        if (cand / ".dvc").is_dir():
            return cand
    return None


def _lock_outs(repo: Path) -> dict[str, dict[str, Any]]:
    """``{posix path relative to the repo: out entry}`` for every out in every dvc.lock."""
    outs: dict[str, dict[str, Any]] = {}
    for lock in [repo / "dvc.lock"]:
        if not lock.is_file():
            continue
        try:
            data = yaml.safe_load(lock.read_text()) or {}
        except yaml.YAMLError as e:
            log.warning("%s is not valid YAML (%s); ignoring it", lock, e)
            continue
        for stage in (data.get("stages") or {}).values():
            for out in stage.get("outs") or []:
                if isinstance(out, dict) and "path" in out:
                    base = lock.parent.relative_to(repo)
                    outs[(base / out["path"]).as_posix()] = out
    return outs


def recorded_dvc_hash(folder: Path) -> str | None:
    """The md5 DVC recorded for ``folder`` (``<md5>.dir``), or None if it is not tracked."""
    folder = folder.resolve()
    repo = find_dvc_root(folder)
    if repo is None:
        return None
    rel = folder.relative_to(repo).as_posix()
    out = _lock_outs(repo).get(rel)
    if out is None:
        dvcfile = folder.with_name(folder.name + ".dvc")
        if dvcfile.is_file():
            data = yaml.safe_load(dvcfile.read_text()) or {}
            out = next((o for o in data.get("outs") or [] if o.get("path") == folder.name), None)
    md5 = (out or {}).get("md5")
    return str(md5) if md5 else None


def _cache_dir(repo: Path) -> Path:
    """DVC's local cache folder (``.dvc/cache`` unless ``cache.dir`` says otherwise)."""
    cache = repo / ".dvc" / "cache"
    for name in ("config", "config.local"):
        cfg = configparser.ConfigParser()
        path = repo / ".dvc" / name
        if path.is_file():
            cfg.read(path)
            if cfg.has_option("cache", "dir"):
                raw = Path(os.path.expanduser(cfg.get("cache", "dir")))
                cache = raw if raw.is_absolute() else (repo / ".dvc" / raw)
    return cache


def _md5(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def dvc_dir_hash(folder: Path) -> str:
    """The ``<md5>.dir`` DVC 3 computes for ``folder`` (same algorithm, no DVC import).

    md5 of the JSON list ``[{"md5": <file md5>, "relpath": <posix path>}, ...]`` sorted by
    path. Reads every file: use for checks on small folders, not on every call. Bytecode is
    left out, as ``.dvcignore`` tells DVC (code folders are stage dependencies too).
    """
    entries = [
        {"md5": _md5(p), "relpath": p.relative_to(folder).as_posix()}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).as_posix() not in DVC_IGNORED
        and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def _still_matches(folder: Path, md5_dir: str) -> bool:
    """Does ``folder`` still hold what DVC recorded as ``md5_dir``?

    Cheap path: the ``.dir`` listing in the DVC cache gives the md5 of ``dataset.json`` and
    ``manifest.jsonl``; dataset.json carries a SHA-256 over every image and mask, so equal
    md5s mean equal content. Without the listing, recompute the whole hash.
    """
    repo = find_dvc_root(folder)
    digest = md5_dir.removesuffix(".dir")
    listing = _cache_dir(repo) / "files" / "md5" / digest[:2] / (digest[2:] + ".dir") if repo else None
    if listing is not None and listing.is_file():
        try:
            entries = {e["relpath"]: e["md5"] for e in json.loads(listing.read_text())}
        except (json.JSONDecodeError, KeyError, TypeError):
            entries = {}
        if entries:
            return all(
                (folder / f).is_file() and entries.get(f) == _md5(folder / f) for f in (DATASET_FILE, MANIFEST_FILE)
            )
    return dvc_dir_hash(folder) == md5_dir


def content_version(folder: Path) -> str:
    path = Path(folder) / DATASET_FILE
    if not path.is_file():
        raise DatasetError(f"{folder} is not a processed dataset (no {DATASET_FILE}); run {ingest_hint(Path(folder))}")
    try:
        meta = DatasetMeta.from_json(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as e:
        raise DatasetError(f"{path}: invalid dataset.json ({e}); re-ingest the dataset") from None
    if not meta.content_hash:
        raise DatasetError(f"{path} has no content_hash; re-ingest the dataset")
    return CONTENT_PREFIX + meta.content_hash


def data_version(dataset_dir: Path) -> str:
    """DVC hash of a processed dataset folder, else ``content:<content_hash>``."""
    folder = Path(dataset_dir)
    fallback = content_version(folder)
    md5_dir = recorded_dvc_hash(folder)
    if md5_dir is None:
        return fallback
    if not _still_matches(folder, md5_dir):
        log.warning(
            "%s changed since DVC recorded it (%s); reporting its content hash. "
            "Run `dvc repro` (or `entroad ingest`) to version it.", folder, md5_dir
        )
        return fallback
    return md5_dir
