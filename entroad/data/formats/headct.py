"""HeadCT (Kaggle head CT hemorrhage): PNGs numbered by id + ``labels.csv``.

::

    head_ct/000.png ... head_ct/199.png
    labels.csv        id, hemorrhage    (0/1; the header has a space after the comma)

Copies already split into ``yes``/``no`` folders are read as such.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from entroad.data.formats.base import ImageFormat, RawItem, Scan, images_in, rel, require_dir
from entroad.data.formats.paired import find_dir, scan_yes_no
from entroad.errors import DatasetError


def _scan(source: Path, options: dict[str, Any]) -> Scan:
    require_dir(source, "source")
    labels = next(iter(sorted(source.rglob("labels.csv"))), None)
    if labels is None:
        if find_dir(source, ("yes",)) and find_dir(source, ("no",)):
            return scan_yes_no(source, options["class_name"], anomaly_type="hemorrhage")
        raise DatasetError(f"{source}: no labels.csv (id, hemorrhage) and no yes/no folders")
    with open(labels, newline="", encoding="utf-8-sig") as f:
        rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in csv.DictReader(f)]
    if rows and not {"id", "hemorrhage"} <= set(rows[0]):
        raise DatasetError(f"{labels}: needs columns id, hemorrhage; has {sorted(rows[0])}")
    # Kaggle's copy nests the images as head_ct/head_ct/*.png; take the folder that has them.
    folders = [d for d in sorted(source.rglob("*")) if d.is_dir() and d.name.lower() == "head_ct"]
    folder = next((d for d in [*folders, labels.parent, source] if images_in(d)), labels.parent)
    by_id: dict[int, Path] = {}
    for img in images_in(folder):
        if img.stem.isdigit():
            by_id[int(img.stem)] = img
    scan = Scan(masks_expected=False)
    seen: set[int] = set()
    for r in rows:
        try:
            key, label = int(r["id"]), int(float(r["hemorrhage"]))
        except ValueError:
            scan.skip(f"labels.csv id={r.get('id')!r}", "unparseable label row")
            continue
        img = by_id.get(key)
        if img is None:
            scan.skip(f"labels.csv id={key}", "label for an unknown image")
            continue
        seen.add(key)
        atype = "hemorrhage" if label else "good"
        scan.items.append(RawItem(img, int(label > 0), options["class_name"], "test", None, atype, rel(img, source)))
    for key in sorted(set(by_id) - seen):
        scan.skip(rel(by_id[key], source), "image without a label")
    return scan


FORMAT = ImageFormat(
    name="headct", domain="medical", scan=_scan, options={"class_name": "head"}, masks=False,
    description="HeadCT: head_ct/<id>.png + labels.csv (id, hemorrhage), image-level only",
)
