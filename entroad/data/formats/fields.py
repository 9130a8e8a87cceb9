"""Checks of the values readers take from a user's files: CSV cells, JSON values, file and
folder names.

A malformed value must never become a traceback halfway through an ingest, nor a record
the manifest later refuses. A per-record problem raises :class:`BadValue` inside the
reader, which skips that record with the reason in the audit (category ``malformed
metadata``, or ``path escapes the dataset folder``). A bad reader *option* comes from
params.yaml, not from the data, and is a :class:`ConfigError` that names the option.
"""

from __future__ import annotations

import csv
import os
import unicodedata
from pathlib import Path, PurePosixPath
from typing import Any

from entroad.data.formats.base import LABEL_FROM_MASK, RawItem, Scan, Skip
from entroad.data.manifest import SPLITS
from entroad.errors import ConfigError, DatasetError

MALFORMED = "malformed metadata"  # audit reason category of a malformed value
ESCAPES = "path escapes the dataset folder"  # ... of a path cell pointing outside
MAX_NAME = 200  # longest class / anomaly-type text kept (longer is almost surely a broken cell)
_TRUE = ("1", "1.0", "true", "yes")
_FALSE = ("0", "0.0", "false", "no")


class BadValue(ValueError):
    """One record's metadata value is malformed; the message is the audit reason detail."""

    category = MALFORMED


class OutsidePath(BadValue):
    """A path in the metadata points outside the dataset folder (absolute or through '..')."""

    category = ESCAPES


def show(value: Any, limit: int = 60) -> str:
    """A short, printable repr of a user value for an audit reason."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def printable(text: str) -> str:
    """``text`` safe to print and to write as UTF-8: undecodable name bytes become U+FFFD."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape, not from a file name
        return text.encode("utf-8", "replace").decode("utf-8")


def _text_problem(text: str) -> str | None:
    if printable(text) != text:
        return "is not valid UTF-8"
    if any(unicodedata.category(c) == "Cc" for c in text):
        return "contains a control character"
    return None


def class_name(value: Any, where: str = "class name") -> str:
    """A class name usable as a label and as one folder level: a non-empty single name."""
    if not isinstance(value, str):
        raise BadValue(f"{where} {show(value)} is not a string")
    name = value.strip()
    if not name:
        raise BadValue(f"{where} is empty")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise BadValue(f"{where} {show(value)} contains a path separator or is '.'/'..'")
    if len(name) > MAX_NAME:
        raise BadValue(f"{where} {show(value)} is longer than {MAX_NAME} characters")
    problem = _text_problem(name)
    if problem:
        raise BadValue(f"{where} {show(printable(value))} {problem}")
    return name


def label01(value: Any, where: str = "label") -> int:
    """A binary label: 0/1 as a number, a bool or the text ``0``/``1``/``true``/``false``."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return int(value.strip().lower() in _TRUE)
    raise BadValue(f"{where} {show(value)} is not 0 or 1")


def split_name(value: Any, where: str = "split") -> str:
    if isinstance(value, str) and value.strip().lower() in SPLITS:
        return value.strip().lower()
    raise BadValue(f"{where} {show(value)} is not one of {', '.join(SPLITS)}")


def inside(root: Path, value: Any, where: str) -> tuple[Path, str]:
    """(absolute path, POSIX relative path) of a path cell that must stay inside ``root``."""
    if not isinstance(value, str) or not value.strip():
        raise BadValue(f"{where} {show(value)} is not a non-empty path")
    if "\x00" in value or printable(value) != value:
        raise BadValue(f"{where} {show(value)} contains a NUL byte or is not valid UTF-8")
    rel = value.strip().replace("\\", "/")
    if PurePosixPath(rel).is_absolute() or (len(rel) > 1 and rel[1] == ":"):
        raise OutsidePath(f"{where} {show(value)} is absolute; paths are relative to the dataset folder")
    # Lexical check: a raw file may be a symlink into a cache (DVC's symlink mode), which
    # is the user's choice; a '..' in the metadata is not.
    base = Path(os.path.normpath(root.absolute()))
    path = Path(os.path.normpath(base / rel))
    if base not in path.parents:
        raise OutsidePath(f"{where} {show(value)} leads outside")
    return path, path.relative_to(base).as_posix()


def _item_problem(item: RawItem) -> str | None:
    try:
        class_name(item.cls)
        split_name(item.split)
        if item.label not in (0, 1, LABEL_FROM_MASK):
            raise BadValue(f"label {show(item.label)} is not 0 or 1")
        if item.anomaly_type is not None:
            if not isinstance(item.anomaly_type, str) or len(item.anomaly_type) > MAX_NAME:
                raise BadValue(f"anomaly type {show(item.anomaly_type)} is not a short text")
            problem = _text_problem(item.anomaly_type)
            if problem:
                raise BadValue(f"anomaly type {show(printable(item.anomaly_type))} {problem}")
        problem = _text_problem(item.rel)
        if problem or not item.rel or ".." in PurePosixPath(item.rel).parts:
            raise BadValue(f"file name {problem or 'is empty or escapes the dataset folder'}")
    except BadValue as e:
        return str(e)
    return None


def checked(scan: Scan) -> Scan:
    """The last step of every reader: items with a malformed value (class, split, label,
    anomaly type, file name) move to the skipped list, and every skipped name is made
    printable (raw names may hold bytes that are not UTF-8)."""
    items: list[RawItem] = []
    skipped = [Skip(printable(s.what), s.reason) for s in scan.skipped]
    for it in scan.items:
        problem = _item_problem(it)
        if problem is None:
            items.append(it if it.cls == it.cls.strip() else _with_cls(it, it.cls.strip()))
        else:
            skipped.append(Skip(printable(it.rel) or "<no name>", f"{MALFORMED} ({problem})"))
    scan.items, scan.skipped = items, skipped
    return scan


def _with_cls(item: RawItem, cls: str) -> RawItem:
    return RawItem(item.image, item.label, cls, item.split, item.mask, item.anomaly_type, item.rel)


def skip_bad(scan: Scan, what: str, error: BadValue) -> None:
    scan.skip(printable(what), f"{error.category} ({error})")


def read_csv(path: Path) -> list[tuple[int, dict[str, str] | None]]:
    """``[(line number, row)]`` of a CSV with a header; keys lower-case-stripped only by the
    caller. A row with more cells than the header is ``None`` (the caller skips it); a file
    that is not UTF-8 text or not CSV is a :class:`DatasetError`."""
    out: list[tuple[int, dict[str, str] | None]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            for row in reader:
                if None in row:  # surplus cells land under the key None
                    out.append((reader.line_num, None))
                    continue
                out.append((reader.line_num, {(k or "").strip(): (v or "").strip() for k, v in row.items()}))
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8 CSV") from None
    except csv.Error as e:
        raise DatasetError(f"{path}: not a readable CSV ({e}); fix the file or remove it") from None
    return out


def class_option(options: dict[str, Any], fmt: str, key: str = "class_name") -> str:
    try:
        return class_name(options.get(key), f"option {key}")
    except BadValue as e:
        raise ConfigError(f"format {fmt!r}: {e}; set a plain name in params.yaml data.datasets options") from None


def bool_option(options: dict[str, Any], fmt: str, key: str) -> bool:
    value = options.get(key)
    if not isinstance(value, bool):
        raise ConfigError(f"format {fmt!r}: option {key} must be true or false, got {show(value)}")
    return value


def folder_option(value: Any, fmt: str, key: str) -> str:
    """A folder *name* option (one level, no separators): it must not point outside the source."""
    try:
        return class_name(value, f"option {key}")
    except BadValue as e:
        raise ConfigError(f"format {fmt!r}: {e}; give a folder name inside the source folder") from None


def split_option(options: dict[str, Any], fmt: str, key: str = "split") -> str:
    try:
        return split_name(options.get(key), f"option {key}")
    except BadValue as e:
        raise ConfigError(f"format {fmt!r}: {e}") from None
