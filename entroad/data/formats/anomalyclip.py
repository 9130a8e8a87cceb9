"""Import of AnomalyCLIP-style prepared data: a root folder with ``meta.json``.

::

    meta.json   {"train": {cls: [rec...]}, "test": {cls: [rec...]}}
    rec = {"img_path": "bottle/test/broken_large/000.png",
           "mask_path": "bottle/ground_truth/broken_large/000_mask.png" or "",
           "cls_name": "bottle", "specie_name": "broken_large", "anomaly": 1}

Paths are relative to the folder holding meta.json. The exporter is
:func:`entroad.data.anomalyclip_meta.export_meta`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from entroad.data.formats.base import ImageFormat, RawItem, Scan, keep_class, require_dir
from entroad.errors import DatasetError


def _scan(source: Path, options: dict[str, Any]) -> Scan:
    require_dir(source, "source")
    meta_path = source / options["meta"]
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path}: no meta.json; point `source` at the folder that holds it")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{meta_path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(meta, dict) or not set(meta) & {"train", "test"}:
        raise DatasetError(f"{meta_path}: expected top-level keys 'train' and/or 'test'")
    scan = Scan()
    root = source.resolve()
    for split in ("train", "test"):
        for cls, recs in sorted((meta.get(split) or {}).items()):
            if not keep_class(cls, options):
                continue
            for r in recs:
                ipath = str(r.get("img_path") or "")
                img = (source / ipath).resolve()
                if not ipath or root not in img.parents:
                    scan.skip(ipath or "<empty img_path>", "path escapes the dataset folder")
                    continue
                if not img.is_file():
                    scan.skip(ipath, "listed in meta.json but missing")
                    continue
                mpath = str(r.get("mask_path") or "")
                mask = (source / mpath).resolve() if mpath else None
                if mask is not None and (root not in mask.parents or not mask.is_file()):
                    scan.skip(mpath, "mask listed in meta.json but missing or outside")
                    mask = None
                label = int(r.get("anomaly", 0))
                atype = str(r.get("specie_name") or ("good" if label == 0 else "anomaly"))
                scan.items.append(RawItem(img, int(label > 0), str(r.get("cls_name") or cls), split, mask, atype, ipath))
    return scan


FORMAT = ImageFormat(
    name="anomalyclip", domain="industrial", scan=_scan, options={"meta": "meta.json"},
    description="AnomalyCLIP meta.json (train/test -> class -> img_path, mask_path, anomaly)",
)
