"""Shards of a distributed prediction: a fixed-size split of the input listing, one result file
per shard (written atomically), and their merge into ``scores.csv``.

A shard's file name carries its index and a digest of its ids, so a changed listing never
reuses a stale result, and a file that exists is a finished shard: a rerun skips it, and a
task that Dask runs twice (a lost worker, a recomputed result) writes the same file again.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entroad.errors import InputError
from entroad.predict.inputs import PredictItem
from entroad.predict.scoring import SCORE_COLUMNS

SHARDS_DIR = "shards"
RUN_KEY_FILE = "run.json"  # what the shard results were scored with: never mix two models
DEFAULT_SHARD_SIZE = 256  # big enough to amortise a task, small enough that a lost worker costs little


@dataclass(frozen=True)
class Shard:
    index: int
    items: tuple[PredictItem, ...]
    digest: str  # of the ids, in order

    @property
    def name(self) -> str:
        return f"shard-{self.index:06d}-{self.digest[:12]}.json"


def plan_shards(items: Sequence[PredictItem], size: int) -> list[Shard]:
    """Consecutive runs of ``size`` items in listing order: the same listing, the same shards."""
    if size < 1:
        raise InputError(f"shard size must be at least 1 (got {size})")
    shards = []
    for index, start in enumerate(range(0, len(items), size)):
        part = tuple(items[start : start + size])
        digest = hashlib.sha256("\n".join(it.id for it in part).encode()).hexdigest()
        shards.append(Shard(index, part, digest))
    return shards


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a uniquely named temporary sibling and rename: readers see all or nothing,
    even when two runs of the same task write at once."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_shard(path: Path, rows: list[dict[str, Any]], failures: list[tuple[str, str]]) -> None:
    atomic_write_text(path, json.dumps({"rows": rows, "failures": [list(f) for f in failures]}) + "\n")


def read_shard(path: Path) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    data = json.loads(path.read_text())
    return data["rows"], [(i, r) for i, r in data["failures"]]


def check_run_key(folder: Path, key: dict[str, Any]) -> None:
    """Record what the shards are scored with; refuse shards left by another model or threshold."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RUN_KEY_FILE
    if path.is_file():
        old = json.loads(path.read_text())
        diff = sorted(k for k in {*old, *key} if old.get(k) != key.get(k))
        if diff and any(folder.glob("shard-*.json")):
            raise InputError(
                f"{folder} holds shard results from a different model or threshold ({', '.join(diff)} differ); "
                "use another --out folder or --restart to discard them"
            )
    atomic_write_text(path, json.dumps(key, indent=2, sort_keys=True) + "\n")


def merge_shards(folder: Path, shards: Sequence[Shard], scores_csv: Path) -> tuple[int, list[tuple[str, str]]]:
    """Write every shard's rows, in listing order, to ``scores_csv`` (atomically); returns the
    row count and the unreadable files in listing order. Result files of shards no longer
    planned (the listing changed) are removed."""
    n_rows = 0
    failures: list[tuple[str, str]] = []
    tmp = scores_csv.with_name(f".{scores_csv.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SCORE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for shard in shards:
            rows, bad = read_shard(folder / shard.name)
            writer.writerows(rows)
            n_rows += len(rows)
            failures += bad
    os.replace(tmp, scores_csv)
    planned = {s.name for s in shards}
    for stale in folder.glob("shard-*.json"):
        if stale.name not in planned:
            stale.unlink()
    return n_rows, failures
