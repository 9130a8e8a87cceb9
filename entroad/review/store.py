"""The verdict store: an append-only JSON-lines file beside the predictions.

Every verdict (and every undo) is one line, written and fsync'ed before the request that
gave it returns, so killing the server loses nothing. Lines are never rewritten; the
current state is replayed from the whole file. Each line records the reviewer and the time.

Conflicts: reviewers' current verdicts on one item that disagree (anomalous vs normal; a
skip is no verdict). :data:`CONFLICT_RULES` decide which one counts on export.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from entroad.errors import InputError

REVIEW_DIR = ".review"  # inside the predictions folder: verdicts and cached thumbnails
STORE_FILE = "verdicts.jsonl"
VERDICTS = ("anomalous", "normal", "skip")
LABELS = {"anomalous": 1, "normal": 0}
# latest: the most recent verdict wins · anomalous: any 'anomalous' wins (the cautious rule)
# · exclude: a disagreement is not ground truth; the item is left out until resolved.
CONFLICT_RULES = ("exclude", "latest", "anomalous")
MAX_REVIEWER = 64
MAX_MARKS = 64


@dataclass(frozen=True)
class Verdict:
    id: str
    verdict: str
    reviewer: str
    time: str
    marks: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "verdict": self.verdict, "reviewer": self.reviewer, "time": self.time,
                "marks": list(self.marks)}


@dataclass
class ItemState:
    """Per item: each reviewer's current verdict (their last one not undone)."""

    by_reviewer: dict[str, Verdict] = field(default_factory=dict)

    def labelled(self) -> list[Verdict]:
        return [v for v in self.by_reviewer.values() if v.verdict in LABELS]

    @property
    def conflict(self) -> bool:
        return len({v.verdict for v in self.labelled()}) > 1

    def latest(self) -> Verdict | None:
        return max(self.by_reviewer.values(), key=lambda v: v.time, default=None)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def clean_reviewer(name: str | None) -> str:
    name = (name or "").strip()
    if not name or len(name) > MAX_REVIEWER or any(ord(c) < 32 for c in name):
        raise InputError(f"reviewer name must be 1-{MAX_REVIEWER} printable characters (got {name[:MAX_REVIEWER]!r})")
    return name


def clean_marks(marks: Any) -> tuple[dict[str, Any], ...]:
    """Boxes ``{"type": "box", "x0", "y0", "x1", "y1"}`` and brush strokes ``{"type":
    "brush", "r", "points": [[x, y], ...]}``, in image fractions (0-1), so they fit any size."""
    if marks is None:
        return ()
    if not isinstance(marks, list) or len(marks) > MAX_MARKS:
        raise InputError(f"marks must be a list of at most {MAX_MARKS} boxes or brush strokes")
    out = []

    def frac(v: Any) -> float:
        if not isinstance(v, int | float) or not 0.0 <= float(v) <= 1.0:
            raise InputError(f"mark coordinates are fractions of the image (0-1), got {v!r}")
        return round(float(v), 5)

    for m in marks:
        kind = m.get("type") if isinstance(m, dict) else None
        if kind == "box":
            out.append({"type": "box", **{k: frac(m.get(k)) for k in ("x0", "y0", "x1", "y1")}})
        elif kind == "brush":
            pts = m.get("points")
            if not isinstance(pts, list) or not pts or len(pts) > 2000:
                raise InputError("a brush stroke needs 1-2000 points")
            out.append({"type": "brush", "r": frac(m.get("r")),
                        "points": [[frac(p[0]), frac(p[1])] for p in pts if isinstance(p, list) and len(p) == 2]})
        else:
            raise InputError(f"unknown mark type {kind!r} (expected 'box' or 'brush')")
    return tuple(out)


class VerdictStore:
    """Append-only verdicts of one predictions folder; thread- and process-safe appends."""

    def __init__(self, path: str | Path, known_ids: Iterable[str] | None = None):
        self.path = Path(path)
        self.known = set(known_ids) if known_ids is not None else None
        self._lock = threading.Lock()
        self.items: dict[str, ItemState] = {}
        self._history: dict[str, list[Verdict]] = {}  # reviewer -> verdicts in order (undo pops)
        self._load()

    # ---------------------------------------------------------------- reading
    def _load(self) -> None:
        if not self.path.is_file():
            return
        with open(self.path, encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    self._apply(json.loads(line))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError, InputError) as e:
                    raise InputError(
                        f"{self.path}: line {n} is broken ({e}): {line.strip()[:120]!r}. Nothing was dropped; "
                        "repair or remove that line (the other lines are intact) and start the review again"
                    ) from None

    def _apply(self, rec: dict[str, Any]) -> Verdict | None:
        reviewer = clean_reviewer(rec["reviewer"])
        if rec.get("op") == "undo":
            hist = self._history.get(reviewer, [])
            if not hist:
                raise ValueError(f"undo by {reviewer!r} with no verdict to undo")
            undone = hist.pop()
            self._restore(undone.id, reviewer)
            return undone
        if rec["verdict"] not in VERDICTS:
            raise ValueError(f"unknown verdict {rec['verdict']!r}")
        v = Verdict(str(rec["id"]), rec["verdict"], reviewer, str(rec["time"]), clean_marks(rec.get("marks")))
        self._history.setdefault(reviewer, []).append(v)
        self.items.setdefault(v.id, ItemState()).by_reviewer[reviewer] = v
        return v

    def _restore(self, item_id: str, reviewer: str) -> None:
        """After an undo, the reviewer's current verdict on that item is their previous one."""
        state = self.items.get(item_id)
        prev = [v for v in self._history.get(reviewer, []) if v.id == item_id]
        if prev:
            self.items.setdefault(item_id, ItemState()).by_reviewer[reviewer] = prev[-1]
        elif state is not None:
            state.by_reviewer.pop(reviewer, None)
            if not state.by_reviewer:
                del self.items[item_id]

    # ---------------------------------------------------------------- writing
    def _append(self, rec: dict[str, Any]) -> None:
        line = json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # a second server on the same folder appends whole lines
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)  # durable before the reviewer sees it saved
        finally:
            os.close(fd)

    def add(self, item_id: str, verdict: str, reviewer: str, marks: Any = None) -> Verdict:
        if self.known is not None and item_id not in self.known:
            raise KeyError(item_id)
        if verdict not in VERDICTS:
            raise InputError(f"verdict must be one of {', '.join(VERDICTS)} (got {verdict!r})")
        rec = {"id": item_id, "verdict": verdict, "reviewer": clean_reviewer(reviewer), "time": _now(),
               "marks": list(clean_marks(marks))}
        with self._lock:
            self._append(rec)
            v = self._apply(rec)
        assert v is not None
        return v

    def undo(self, reviewer: str) -> Verdict | None:
        """Withdraw the reviewer's last verdict; returns it (None when there is none)."""
        reviewer = clean_reviewer(reviewer)
        with self._lock:
            if not self._history.get(reviewer):
                return None
            rec = {"op": "undo", "reviewer": reviewer, "time": _now()}
            self._append(rec)
            return self._apply(rec)

    # ---------------------------------------------------------------- views
    def state(self, item_id: str) -> ItemState | None:
        return self.items.get(item_id)

    def conflicts(self) -> list[tuple[str, list[Verdict]]]:
        return [(i, s.labelled()) for i, s in sorted(self.items.items()) if s.conflict]

    def reviewed(self) -> int:
        return sum(1 for s in self.items.values() if s.by_reviewer)

    def decide(self, item_id: str, rule: str) -> Verdict | None:
        """The verdict that counts on export, or None (unlabelled, only skipped, or excluded)."""
        if rule not in CONFLICT_RULES:
            raise InputError(f"conflict rule must be one of {', '.join(CONFLICT_RULES)} (got {rule!r})")
        state = self.items.get(item_id)
        labelled = state.labelled() if state else []
        if not labelled:
            return None
        if not state.conflict or rule == "latest":
            return max(labelled, key=lambda v: v.time)
        if rule == "anomalous":
            return max((v for v in labelled if v.verdict == "anomalous"), key=lambda v: v.time)
        return None
