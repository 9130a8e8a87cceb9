"""The review queue: what ``entroad predict`` wrote into a predictions folder, sorted and paged.

Reads ``predict.json`` (model identity, threshold, input kind) and ``scores.csv`` (one row per
image) once; images are opened only when the page asks for one (lazy thumbnails). Item ids
are what predict wrote: relative paths for image folders, pseudonymous ids for DICOM.
"""

from __future__ import annotations

import bisect
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entroad.errors import InputError
from entroad.predict import META_FILE, SCORES_FILE

SORTS = ("score", "uncertainty", "id")
MAX_PER_PAGE = 200


@dataclass(frozen=True)
class QueueItem:
    index: int  # position in scores.csv: the stable handle used in URLs
    id: str
    score: float
    overlay: str  # path relative to the predictions folder, "" when predict wrote none


class PredictionQueue:
    """The scored images of one predictions folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser().resolve()
        missing = [n for n in (META_FILE, SCORES_FILE) if not (self.folder / n).is_file()]
        if not self.folder.is_dir() or missing:
            what = "the folder itself" if not self.folder.is_dir() else " and ".join(missing)
            raise InputError(
                f"{folder} is not a predictions folder: missing {what}. "
                "Create one with `entroad predict --model ... INPUT --out FOLDER`"
            )
        try:
            self.meta: dict[str, Any] = json.loads((self.folder / META_FILE).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{self.folder / META_FILE}: unreadable ({e}); rerun `entroad predict`") from None
        self.items = self._read_scores()
        if not self.items:
            raise InputError(f"{self.folder / SCORES_FILE} has no scored images; rerun `entroad predict`")
        self.by_id = {it.id: it for it in self.items}
        self._sorted_scores = sorted(it.score for it in self.items)
        thr = self.meta.get("threshold")
        self.threshold: float | None = None if thr is None else float(thr)
        self.kind: str = self.meta.get("input_kind", "images")
        self.random_init: bool = bool(self.meta.get("random_init"))

    def _read_scores(self) -> list[QueueItem]:
        path = self.folder / SCORES_FILE
        items = []
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            need = {"id", "score", "overlay"} - set(reader.fieldnames or [])
            if need:
                raise InputError(f"{path}: missing column(s) {sorted(need)}; rerun `entroad predict`")
            for n, row in enumerate(reader, start=2):
                try:
                    items.append(QueueItem(len(items), row["id"], float(row["score"]), row["overlay"] or ""))
                except (TypeError, ValueError):
                    raise InputError(f"{path}: line {n} has no valid score ({row.get('score')!r})") from None
        return items

    # ------------------------------------------------------------------------------------
    def flagged_count(self, threshold: float) -> int:
        """Images with ``score > threshold`` (predict's rule)."""
        return len(self._sorted_scores) - bisect.bisect_right(self._sorted_scores, threshold)

    def score_range(self) -> tuple[float, float]:
        return self._sorted_scores[0], self._sorted_scores[-1]

    def default_threshold(self) -> float:
        """The operating point predict used, else the median (a starting point to move)."""
        if self.threshold is not None:
            return self.threshold
        return self._sorted_scores[len(self._sorted_scores) // 2]

    def ordered(self, sort: str, threshold: float) -> list[QueueItem]:
        if sort not in SORTS:
            raise InputError(f"sort must be one of {', '.join(SORTS)} (got {sort!r})")
        if sort == "score":
            return sorted(self.items, key=lambda it: (-it.score, it.index))
        if sort == "uncertainty":  # closest to the threshold first
            return sorted(self.items, key=lambda it: (abs(it.score - threshold), it.index))
        return sorted(self.items, key=lambda it: it.id)

    def page(self, sort: str, threshold: float, page: int, per_page: int) -> tuple[list[QueueItem], int]:
        """Items of one page and the number of pages."""
        per_page = max(1, min(MAX_PER_PAGE, per_page))
        pages = max(1, -(-len(self.items) // per_page))
        page = max(0, min(page, pages - 1))
        order = self.ordered(sort, threshold)
        return order[page * per_page:(page + 1) * per_page], pages

    def position(self, sort: str, threshold: float, item_id: str) -> int:
        return next(i for i, it in enumerate(self.ordered(sort, threshold)) if it.id == item_id)

    def resolve(self, rel: str) -> Path | None:
        """A file inside the predictions folder, or None for anything outside it (or absent)."""
        if not rel or "\x00" in rel:
            return None
        path = (self.folder / rel).resolve()
        if not path.is_relative_to(self.folder) or not path.is_file():
            return None
        return path
