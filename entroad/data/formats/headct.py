"""HeadCT (Kaggle head CT hemorrhage): PNGs numbered by id + ``labels.csv``.

::

    head_ct/000.png ... head_ct/199.png
    labels.csv        id, hemorrhage    (0/1; the header has a space after the comma)

A row whose id is not a whole number, whose label is not 0/1 or whose id repeats is
skipped and reported. Copies already split into ``yes``/``no`` folders are read as such.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from entroad.data.formats.base import ImageFormat, RawItem, Scan, images_in, rel, require_dir
from entroad.data.formats.fields import BadValue, checked, class_option, label01, read_csv, show, skip_bad
from entroad.data.formats.paired import find_dir, scan_yes_no
from entroad.errors import DatasetError

FORMAT_NAME = "headct"


def _scan(source: Path, options: dict[str, Any]) -> Scan:
    require_dir(source, "source")
    cls = class_option(options, FORMAT_NAME)
    labels = next(iter(sorted(source.rglob("labels.csv"))), None)
    if labels is None:
        if find_dir(source, ("yes",)) and find_dir(source, ("no",)):
            return scan_yes_no(source, cls, anomaly_type="hemorrhage")
        raise DatasetError(f"{source}: no labels.csv (id, hemorrhage) and no yes/no folders")
    rows = read_csv(labels)
    header = next((r for _, r in rows if r is not None), None)
    if header is not None and not {"id", "hemorrhage"} <= {k.lower() for k in header}:
        raise DatasetError(f"{labels}: needs columns id, hemorrhage; has {sorted(header)}")
    # Kaggle's copy nests the images as head_ct/head_ct/*.png; take the folder that has them.
    folders = [d for d in sorted(source.rglob("*")) if d.is_dir() and d.name.lower() == "head_ct"]
    folder = next((d for d in [*folders, labels.parent, source] if images_in(d)), labels.parent)
    by_id: dict[int, Path] = {}
    for img in images_in(folder):
        if _is_number(img.stem):
            by_id[int(img.stem)] = img
    scan = Scan(masks_expected=False)
    seen: set[int] = set()
    for line, row in rows:
        if row is None:
            skip_bad(scan, f"labels.csv line {line}", BadValue("more cells than the header"))
            continue
        r = {k.lower(): v for k, v in row.items()}
        try:
            key, label = _row_id(r["id"]), label01(r["hemorrhage"], "hemorrhage")
        except BadValue as e:
            skip_bad(scan, f"labels.csv line {line}", e)
            continue
        img = by_id.get(key)
        if img is None:
            scan.skip(f"labels.csv id={key}", "label for an unknown image")
            continue
        if key in seen:
            skip_bad(scan, f"labels.csv line {line}", BadValue(f"id {key} is listed twice"))
            continue
        seen.add(key)
        atype = "hemorrhage" if label else "good"
        scan.items.append(RawItem(img, label, cls, "test", None, atype, rel(img, source)))
    for key in sorted(set(by_id) - seen):
        scan.skip(rel(by_id[key], source), "image without a label")
    return checked(scan)


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()  # str.isdigit alone accepts e.g. superscripts


def _row_id(value: str) -> int:
    if not _is_number(value):
        raise BadValue(f"id {show(value)} is not a non-negative whole number")
    return int(value)


FORMAT = ImageFormat(
    name=FORMAT_NAME, domain="medical", scan=_scan, options={"class_name": "head"}, masks=False,
    description="HeadCT: head_ct/<id>.png + labels.csv (id, hemorrhage), image-level only",
)
