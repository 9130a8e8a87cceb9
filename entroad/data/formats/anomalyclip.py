"""Import of AnomalyCLIP-style prepared data: a root folder with ``meta.json``.

::

    meta.json   {"train": {cls: [rec...]}, "test": {cls: [rec...]}}
    rec = {"img_path": "bottle/test/broken_large/000.png",
           "mask_path": "bottle/ground_truth/broken_large/000_mask.png" or "",
           "cls_name": "bottle", "specie_name": "broken_large", "anomaly": 1}

Paths are relative to the folder holding meta.json and must stay inside it. A record
with a malformed value (wrong JSON type, label not 0/1, class name with a path separator,
path escaping the folder) is skipped and reported. The exporter is
:func:`entroad.data.anomalyclip_meta.export_meta`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from entroad.data.formats.base import ImageFormat, RawItem, Scan, keep_class, require_dir
from entroad.data.formats.fields import BadValue, checked, class_name, inside, label01, show, skip_bad
from entroad.errors import DatasetError


def _records(meta: dict[str, Any], split: str, scan: Scan) -> list[tuple[str, int, Any]]:
    """``[(class key, index, record)]`` of one split; wrongly typed parts are skipped."""
    part = meta.get(split)
    if part is None:
        return []
    if not isinstance(part, dict):
        skip_bad(scan, f"meta.json {split}", BadValue(f"{split!r} is {type(part).__name__}, not an object of classes"))
        return []
    out = []
    for cls, recs in sorted(part.items()):
        if not isinstance(recs, list):
            skip_bad(scan, f"meta.json {split}/{cls}", BadValue(f"class {show(cls)} holds {type(recs).__name__}, not a list"))
            continue
        out.extend((cls, i, r) for i, r in enumerate(recs))
    return out


def _item(source: Path, split: str, cls: str, r: Any) -> RawItem:
    if not isinstance(r, dict):
        raise BadValue(f"record is {type(r).__name__}, not an object")
    img, ipath = inside(source, r.get("img_path"), "img_path")
    if not img.is_file():
        raise FileNotFoundError(ipath)
    mask = None
    if r.get("mask_path") not in (None, ""):
        mask, _ = inside(source, r.get("mask_path"), "mask_path")
    label = label01(r.get("anomaly", 0), "anomaly")
    name = class_name(r["cls_name"] if r.get("cls_name") not in (None, "") else cls, "cls_name")
    specie = r.get("specie_name")
    if specie not in (None, "") and not isinstance(specie, str):
        raise BadValue(f"specie_name {show(specie)} is not a string")
    atype = str(specie or ("good" if label == 0 else "anomaly"))
    return RawItem(img, label, name, split, mask, atype, ipath)


def _scan(source: Path, options: dict[str, Any]) -> Scan:
    require_dir(source, "source")
    meta_path = source / options["meta"]
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path}: no meta.json; point `source` at the folder that holds it")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{meta_path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{meta_path}: not UTF-8 text (byte {e.start}); save it as UTF-8 JSON") from None
    if not isinstance(meta, dict) or not set(meta) & {"train", "test"}:
        raise DatasetError(f"{meta_path}: expected top-level keys 'train' and/or 'test'")
    scan = Scan()
    for split in ("train", "test"):
        for cls, i, r in _records(meta, split, scan):
            where = f"meta.json {split}/{cls}[{i}]"
            try:
                item = _item(source, split, cls, r)
            except BadValue as e:
                skip_bad(scan, where, e)
                continue
            except FileNotFoundError as e:
                scan.skip(str(e), "listed in meta.json but missing")
                continue
            if not keep_class(item.cls, options):
                continue
            if item.mask is not None and not item.mask.is_file():
                scan.skip(str(r["mask_path"]), "mask listed in meta.json but missing")
                item = replace(item, mask=None)
            scan.items.append(item)
    return checked(scan)


FORMAT = ImageFormat(
    name="anomalyclip", domain="industrial", scan=_scan, options={"meta": "meta.json"},
    description="AnomalyCLIP meta.json (train/test -> class -> img_path, mask_path, anomaly)",
)
