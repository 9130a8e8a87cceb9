"""The manifest contract: the only thing training, evaluation and prediction read.

A processed dataset is a folder::

    <root>/manifest.jsonl   one JSON record per image (see :class:`Record`)
    <root>/dataset.json     name, domain, classes, counts, source format, ingest params, hash
    <root>/images/...       8-bit RGB/L PNGs (any relative layout)
    <root>/masks/...        8-bit binary PNG masks (0 / 255), same size as their image

Paths in records are relative POSIX paths that must stay inside the folder (``../`` or
absolute paths are rejected), so a manifest can never make the pipeline read or write
outside its dataset. The format is a superset of AnomalyCLIP's ``meta.json`` fields.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from entroad.errors import DatasetError, ManifestError

MANIFEST_FILE = "manifest.jsonl"
DATASET_FILE = "dataset.json"
SCHEMA_VERSION = 1
SPLITS = ("train", "test")
DOMAINS = ("industrial", "medical")
_RECORD_KEYS = {"image", "mask", "label", "class", "split", "source_id", "anomaly_type"}


def check_relpath(rel: str, what: str = "path") -> str:
    """Return ``rel`` normalised to POSIX, or raise if it is absolute or escapes the folder."""
    if not isinstance(rel, str) or not rel.strip():
        raise ManifestError(f"{what} must be a non-empty relative path, got {rel!r}")
    rel = rel.replace("\\", "/")
    p = PurePosixPath(rel)
    if p.is_absolute() or (len(rel) > 1 and rel[1] == ":"):
        raise ManifestError(f"{what} {rel!r} is absolute; manifest paths are relative to the dataset folder")
    if ".." in p.parts:
        raise ManifestError(f"{what} {rel!r} escapes the dataset folder ('..' is not allowed)")
    return str(p)


@dataclass(frozen=True)
class Skip:
    """An input left out of a dataset, and why (goes to the audit)."""

    what: str  # relative path (never a PHI-bearing value)
    reason: str  # short category, e.g. "mask without image"


@dataclass(frozen=True)
class Record:
    """One image of a processed dataset."""

    image: str
    label: int  # 0 normal, 1 anomalous
    cls: str  # class (object / organ / modality); JSON key "class"
    split: str = "test"
    mask: str | None = None  # None: no pixel annotation (normal images may still have none)
    source_id: str = ""  # stable id of the source file (pseudonymous for DICOM)
    anomaly_type: str | None = None  # e.g. "scratch", "good", "tumor"

    def __post_init__(self) -> None:
        check_relpath(self.image, "image")
        if self.mask is not None:
            check_relpath(self.mask, "mask")
        if self.label not in (0, 1):
            raise ManifestError(f"{self.image}: label must be 0 or 1, got {self.label!r}")
        if self.split not in SPLITS:
            raise ManifestError(f"{self.image}: split must be one of {SPLITS}, got {self.split!r}")
        if not self.cls:
            raise ManifestError(f"{self.image}: class must be a non-empty string")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["class"] = d.pop("cls")
        return {k: d[k] for k in ("image", "mask", "label", "class", "split", "source_id", "anomaly_type")}

    @classmethod
    def from_json(cls, d: dict[str, Any], where: str = "") -> Record:
        if not isinstance(d, dict):
            raise ManifestError(f"{where}: a record must be a JSON object")
        unknown = set(d) - _RECORD_KEYS
        if unknown:
            raise ManifestError(f"{where}: unknown record keys {sorted(unknown)}")
        missing = {"image", "label", "class"} - set(d)
        if missing:
            raise ManifestError(f"{where}: missing record keys {sorted(missing)}")
        try:
            return cls(
                image=d["image"],
                label=int(d["label"]),
                cls=str(d["class"]),
                split=d.get("split", "test"),
                mask=d.get("mask"),
                source_id=str(d.get("source_id") or ""),
                anomaly_type=d.get("anomaly_type"),
            )
        except ManifestError as e:
            raise ManifestError(f"{where}: {e}") from None


@dataclass
class DatasetMeta:
    """``dataset.json``: what a processed dataset is and how it was made."""

    name: str
    domain: str
    classes: list[str]
    counts: dict[str, int]
    source_format: str
    ingest_params: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise DatasetError(f"dataset {self.name!r}: domain must be one of {DOMAINS}, got {self.domain!r}")

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DatasetMeta:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def compute_counts(records: Iterable[Record]) -> dict[str, int]:
    recs = list(records)
    return {
        "images": len(recs),
        "normal": sum(r.label == 0 for r in recs),
        "anomalous": sum(r.label == 1 for r in recs),
        "with_mask": sum(r.mask is not None for r in recs),
        **{f"split_{k}": v for k, v in sorted(Counter(r.split for r in recs).items())},
    }


def _file_digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def content_hash(root: Path, records: list[Record], digests: dict[str, str] | None = None) -> str:
    """SHA-256 over the manifest lines and the bytes of every referenced file.

    Deterministic for identical content, independent of file mtimes and of the folder's
    location, so a re-ingest of unchanged input yields the same hash (and DVC version).
    ``digests``: SHA-256 hex of files by relative path, taken by whoever wrote the bytes
    (ingest workers), so that they are not read back one by one here; others are read.
    """
    digests = digests or {}
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps(r.to_json(), sort_keys=True).encode())
        for rel in (r.image, r.mask):
            if rel is not None:
                h.update((digests.get(rel) or _file_digest(root / rel)).encode())
    return h.hexdigest()


def write_manifest(
    root: str | Path, records: list[Record], meta: DatasetMeta, digests: dict[str, str] | None = None
) -> DatasetMeta:
    """Write ``manifest.jsonl`` + ``dataset.json`` into ``root`` (files must already exist).

    Fills ``classes``, ``counts`` and ``content_hash`` (see :func:`content_hash` for
    ``digests``) from the records. Writes each file via a temp file + ``os.replace`` so a
    crash never leaves a half-written manifest.
    """
    root = Path(root)
    if not records:
        raise DatasetError(f"dataset {meta.name!r}: refusing to write an empty manifest")
    for r in records:
        for rel in (r.image, r.mask):
            if rel is not None and not (root / rel).is_file():
                raise ManifestError(f"dataset {meta.name!r}: {rel} is listed but missing")
    records = sorted(records, key=lambda r: (r.cls, r.split, r.image))
    meta.classes = sorted({r.cls for r in records})
    meta.counts = compute_counts(records)
    meta.content_hash = content_hash(root, records, digests)
    _atomic_write(root / MANIFEST_FILE, "".join(json.dumps(r.to_json()) + "\n" for r in records))
    _atomic_write(root / DATASET_FILE, json.dumps(asdict(meta), indent=2, sort_keys=True) + "\n")
    return meta


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def ingest_hint(folder: Path) -> str:
    """The command that (re)creates ``folder``: named when it sits in a processed root."""
    if folder.parent.name == "processed":
        return f"`entroad ingest {folder.name}`"
    return "`entroad ingest NAME` (or pass a processed folder)"


class ProcessedDataset:
    """A validated processed dataset folder (manifest + dataset.json)."""

    def __init__(self, root: Path, meta: DatasetMeta, records: list[Record]):
        self.root = root
        self.meta = meta
        self.records = records

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def has_masks(self) -> bool:
        return any(r.mask is not None for r in self.records)

    def path(self, rel: str) -> Path:
        """Absolute path of a record's file (already checked not to escape the folder)."""
        return self.root / check_relpath(rel)

    def select(self, split: str = "all", classes: Iterable[str] | None = None) -> list[Record]:
        keep = set(classes) if classes is not None else None
        return [
            r
            for r in self.records
            if (split == "all" or r.split == split) and (keep is None or r.cls in keep)
        ]

    @classmethod
    def load(cls, root: str | Path, check_files: bool = True) -> ProcessedDataset:
        root = Path(root)
        mpath, dpath = root / MANIFEST_FILE, root / DATASET_FILE
        if not mpath.is_file() or not dpath.is_file():
            raise DatasetError(
                f"{root} is not a processed dataset (needs {MANIFEST_FILE} and {DATASET_FILE}); "
                f"create it with {ingest_hint(root)}"
            )
        try:
            meta = DatasetMeta.from_json(json.loads(dpath.read_text()))
        except (json.JSONDecodeError, TypeError) as e:
            raise DatasetError(f"{dpath}: invalid dataset.json ({e})") from None
        records: list[Record] = []
        for i, line in enumerate(mpath.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{mpath}:{i}: not valid JSON ({e.msg})") from None
            records.append(Record.from_json(d, f"{mpath}:{i}"))
        if not records:
            raise DatasetError(f"{mpath}: the dataset has no images")
        if check_files:
            missing = [
                rel for r in records for rel in (r.image, r.mask) if rel is not None and not (root / rel).is_file()
            ]
            if missing:
                raise DatasetError(
                    f"{root}: {len(missing)} file(s) listed in the manifest are missing, e.g. {missing[0]} "
                    "(run `dvc pull` or re-ingest)"
                )
        return cls(root, meta, records)
