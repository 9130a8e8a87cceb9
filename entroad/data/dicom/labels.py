"""Labels and masks for DICOM ingest: a CSV keyed by relative path or pseudonymous id.

``labels.csv`` (path relative to the source folder, option ``labels``)::

    path,label,mask,anomaly_type,slice
    study1/ct_head_2,1,masks/ct_head_2.nii.gz,hemorrhage,     <- a series folder + NIfTI mask
    study1/mr/IM0005.dcm,1,masks/IM0005.png,tumor,             <- one file + PNG mask
    study1/ct_head_1,0,,,                                      <- image-level only
    ser-3f9a0c1b2d4e,1,,tumor,12                               <- pseudonymous series id + slice

* ``path`` (or ``id``): a DICOM file, a folder (every series below it) or the pseudonymous
  series id that earlier ingests wrote (``source_id`` = ``<series id>/<slice>``).
* ``label``: 0/1 (also normal/anomaly, no/yes); optional when a mask is given.
* ``mask``: PNG (one slice; same rows x columns as the image) or NIfTI (a volume on the
  series' voxel grid, oriented through the affines; slices with mask pixels become
  anomalous, the others normal).
* ``anomaly_type``: a short category (written as a slug: lower case, ``_``, <= 32 chars).
* ``slice``: restrict the row to one slice index of the volume (0-based, sorted order).

Most specific row wins: file > volume row with ``slice`` > volume / folder row.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from entroad.errors import DicomError

_TYPE_CHARS = re.compile(r"[^a-z0-9]+")
_SERIES_ID = re.compile(r"ser-[0-9a-f]{12}")  # what ingest writes as <series id> in source_id
_TRUE = {"1", "yes", "true", "anomaly", "anomalous", "abnormal", "positive"}
_FALSE = {"0", "no", "false", "normal", "good", "negative"}


@dataclass(frozen=True)
class LabelRow:
    row: int  # 1-based data row number (for messages; never the path)
    key: str  # relative POSIX path or pseudonymous series id
    by_id: bool
    label: int | None
    mask: str | None
    anomaly_type: str | None
    slice: int | None


def read_labels(path: Path) -> tuple[list[LabelRow], list[int]]:
    """Parse the CSV; returns rows and the numbers of unparseable rows."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = {(c or "").strip().lower() for c in reader.fieldnames or []}
            if not fields & {"path", "id"}:
                raise DicomError(f"{path.name}: needs a 'path' or 'id' column (and label/mask); has {sorted(fields)}")
            if not fields & {"label", "mask"}:
                raise DicomError(f"{path.name}: needs a 'label' and/or 'mask' column")
            # Extra cells beyond the header land under key None: ignore them.
            raw = [{k.strip().lower(): (v or "").strip() for k, v in r.items() if isinstance(k, str)} for r in reader]
    except UnicodeDecodeError:
        raise DicomError(f"{path.name}: not a UTF-8 CSV file") from None
    rows, bad = [], []
    for i, r in enumerate(raw, 1):
        key = r.get("path") or r.get("id") or ""
        by_id = (not r.get("path") and bool(r.get("id"))) or bool(_SERIES_ID.fullmatch(key))
        lab = r.get("label", "").lower()
        label = 1 if lab in _TRUE else 0 if lab in _FALSE else None
        sl = r.get("slice", "")
        if not key or (lab and label is None) or (label is None and not r.get("mask")) or (sl and not sl.isdigit()):
            bad.append(i)
            continue
        key = key if by_id else str(PurePosixPath(key.replace("\\", "/"))).rstrip("/")
        rows.append(LabelRow(i, key, by_id, label, r.get("mask") or None, anomaly_slug(r.get("anomaly_type", "")),
                             int(sl) if sl else None))
    return rows, bad


def anomaly_slug(text: str) -> str | None:
    """``"Sub-dural Bleed"`` -> ``"sub_dural_bleed"``: a short category, not free text.

    The anomaly type is written into the manifest; a slug of at most 32 characters keeps a
    free-text note typed into the CSV (which may name the patient) out of a category field.
    """
    slug = _TYPE_CHARS.sub("_", text.strip().lower()).strip("_")[:32].strip("_")
    return slug or None


def covers(row: LabelRow, rel: str) -> bool:
    """Does a path row name ``rel`` itself or a folder above it?"""
    return not row.by_id and (rel == row.key or rel.startswith(row.key + "/") or row.key == ".")
