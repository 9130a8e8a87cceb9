"""Export a processed dataset as AnomalyCLIP's ``meta.json`` (the import is a format reader).

::

    {"train": {cls: [...]}, "test": {cls: [{"img_path": "images/...png", "mask_path": "masks/...png" | "",
              "cls_name": cls, "specie_name": "scratch" | "good", "anomaly": 0 | 1}, ...]}}

Paths are relative to the processed dataset folder, so the default output
``<dataset>/meta.json`` makes the folder directly usable by AnomalyCLIP-style loaders.
DVC ignores that file (``.dvcignore``), so exporting does not change the data version.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from entroad.data.manifest import ProcessedDataset

META_FILE = "meta.json"


def to_meta(ds: ProcessedDataset) -> dict[str, Any]:
    meta: dict[str, dict[str, list[dict[str, Any]]]] = {"train": {}, "test": {}}
    for r in ds.records:
        meta[r.split].setdefault(r.cls, []).append({
            "img_path": r.image,
            "mask_path": r.mask or "",
            "cls_name": r.cls,
            "specie_name": r.anomaly_type or ("good" if r.label == 0 else "anomaly"),
            "anomaly": r.label,
        })
    return {k: dict(sorted(v.items())) for k, v in meta.items()}


def export_meta(ds: ProcessedDataset, out: Path | None = None) -> Path:
    """Write ``meta.json`` (default: inside the dataset folder); returns its path."""
    out = Path(out) if out is not None else ds.root / META_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(to_meta(ds), indent=2) + "\n")
    os.replace(tmp, out)
    return out
