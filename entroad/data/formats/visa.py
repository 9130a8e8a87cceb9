"""VisA: images + masks per class, split given by ``split_csv/1cls.csv``.

::

    split_csv/1cls.csv                     object,split,label,image,mask
    candle/Data/Images/Normal/0000.JPG
    candle/Data/Images/Anomaly/000.JPG
    candle/Data/Masks/Anomaly/000.png      (0/1 label maps, binarised at > 0)
    candle/image_anno.csv                  image,label,mask (label = defect description)

Without the split CSV every image is read from the folders as a test image.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from entroad.data.formats.base import ImageFormat, RawItem, Scan, images_in, keep_class, rel, require_dir
from entroad.errors import DatasetError


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(f)]


def _defect_types(source: Path, cls: str) -> dict[str, str]:
    anno = source / cls / "image_anno.csv"
    if not anno.is_file():
        return {}
    return {r.get("image", ""): r.get("label", "") for r in _read_csv(anno)}


def _atype(text: str) -> str:
    t = text.strip().lower().replace(" ", "_")
    return t if t and t not in ("anomaly", "normal") else "anomaly"


def _scan(source: Path, options: dict[str, Any]) -> Scan:
    require_dir(source, "source")
    split_csv = source / options["split_csv"]
    if split_csv.is_file():
        return _scan_csv(source, split_csv, options)
    return _scan_folders(source, options)


def _scan_csv(source: Path, split_csv: Path, options: dict[str, Any]) -> Scan:
    scan = Scan()
    rows = _read_csv(split_csv)
    need = {"object", "split", "label", "image"}
    if rows and not need <= set(rows[0]):
        raise DatasetError(f"{split_csv}: needs columns {sorted(need)}, has {sorted(rows[0])}")
    types: dict[str, dict[str, str]] = {}
    referenced: set[Path] = set()
    for r in rows:
        cls = r["object"]
        if not keep_class(cls, options):
            continue
        img = source / r["image"]
        mask = source / r["mask"] if r.get("mask") else None
        if mask is not None:
            referenced.add(mask.resolve())
        if not img.is_file():
            scan.skip(r["image"], "listed in split csv but missing")
            continue
        if mask is not None and not mask.is_file():
            scan.skip(r["mask"], "mask listed in split csv but missing")
            mask = None
        label = 0 if r["label"].lower() in ("normal", "good", "0") else 1
        split = r["split"] if r["split"] in ("train", "test") else "test"
        if cls not in types:
            types[cls] = _defect_types(source, cls)
        atype = "good" if label == 0 else _atype(types[cls].get(r["image"], ""))
        scan.items.append(RawItem(img, label, cls, split, mask, atype, r["image"]))
    for cls in sorted(types):
        for m in images_in(source / cls / "Data" / "Masks" / "Anomaly"):
            if m.resolve() not in referenced:
                scan.skip(rel(m, source), "mask without image")
    return scan


def _scan_folders(source: Path, options: dict[str, Any]) -> Scan:
    scan = Scan()
    for cdir in sorted(p for p in source.iterdir() if (p / "Data" / "Images").is_dir()):
        cls = cdir.name
        if not keep_class(cls, options):
            continue
        types = _defect_types(source, cls)
        masks = {m.stem: m for m in images_in(cdir / "Data" / "Masks" / "Anomaly")}
        used: set[str] = set()
        for img in images_in(cdir / "Data" / "Images" / "Normal"):
            scan.items.append(RawItem(img, 0, cls, "test", None, "good", rel(img, source)))
        for img in images_in(cdir / "Data" / "Images" / "Anomaly"):
            used.add(img.stem)
            r = rel(img, source)
            scan.items.append(RawItem(img, 1, cls, "test", masks.get(img.stem), _atype(types.get(r, "")), r))
        for stem in sorted(set(masks) - used):
            scan.skip(rel(masks[stem], source), "mask without image")
    return scan


FORMAT = ImageFormat(
    name="visa",
    domain="industrial",
    scan=_scan,
    options={"split_csv": "split_csv/1cls.csv"},
    description="VisA: <class>/Data/{Images,Masks}/... with split_csv/1cls.csv",
)
