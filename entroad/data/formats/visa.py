"""VisA: images + masks per class, split given by ``split_csv/1cls.csv``.

::

    split_csv/1cls.csv                     object,split,label,image,mask
    candle/Data/Images/Normal/0000.JPG
    candle/Data/Images/Anomaly/000.JPG
    candle/Data/Masks/Anomaly/000.png      (0/1 label maps, binarised at > 0)
    candle/image_anno.csv                  image,label,mask (label = defect description)

A split-CSV row with an unknown label or split, a class name with a path separator, or an
image/mask path outside the dataset folder is skipped and reported. Without the split CSV every image is read from the folders as a test image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from entroad.data.formats.base import ImageFormat, RawItem, Scan, images_in, keep_class, rel, require_dir
from entroad.data.formats.fields import (
    BadValue,
    checked,
    class_name,
    inside,
    read_csv,
    show,
    skip_bad,
    split_name,
)
from entroad.errors import DatasetError

_NORMAL = ("normal", "good", "0")
_ANOMALOUS = ("anomaly", "abnormal", "bad", "1")


def _defect_types(source: Path, cls: str) -> dict[str, str]:
    anno = source / cls / "image_anno.csv"
    if not anno.is_file():
        return {}
    # Only a description of the defect: a malformed row just leaves the type generic.
    return {r.get("image", ""): r.get("label", "") for _, r in read_csv(anno) if r is not None}


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
    rows = read_csv(split_csv)
    need = {"object", "split", "label", "image"}
    header = next((r for _, r in rows if r is not None), None)
    if header is not None and not need <= set(header):
        raise DatasetError(f"{split_csv}: needs columns {sorted(need)}, has {sorted(header)}")
    types: dict[str, dict[str, str]] = {}
    referenced: set[Path] = set()
    for line, r in rows:
        where = f"{options['split_csv']} line {line}"
        try:
            if r is None:
                raise BadValue("more cells than the header")
            cls = class_name(r["object"], "object")
            label = _label(r["label"])
            split = split_name(r["split"])
            img, ipath = inside(source, r["image"], "image")
            mask = inside(source, r["mask"], "mask")[0] if r.get("mask") else None
        except BadValue as e:
            skip_bad(scan, where, e)
            continue
        if not keep_class(cls, options):
            continue
        if mask is not None:
            referenced.add(mask.resolve())
        if not img.is_file():
            scan.skip(ipath, "listed in split csv but missing")
            continue
        if mask is not None and not mask.is_file():
            scan.skip(r["mask"], "mask listed in split csv but missing")
            mask = None
        if cls not in types:
            types[cls] = _defect_types(source, cls)
        atype = "good" if label == 0 else _atype(types[cls].get(r["image"], ""))
        scan.items.append(RawItem(img, label, cls, split, mask, atype, ipath))
    for cls in sorted(types):
        for m in images_in(source / cls / "Data" / "Masks" / "Anomaly"):
            if m.resolve() not in referenced:
                scan.skip(rel(m, source), "mask without image")
    return checked(scan)


def _label(value: str) -> int:
    """VisA labels are words (normal / anomaly); 0/1 is accepted too. Anything else is malformed."""
    word = value.strip().lower()
    if word in _NORMAL or word in _ANOMALOUS:
        return int(word in _ANOMALOUS)
    raise BadValue(f"label {show(value)} is not one of {', '.join(_NORMAL + _ANOMALOUS)}")


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
    return checked(scan)


FORMAT = ImageFormat(
    name="visa",
    domain="industrial",
    scan=_scan,
    options={"split_csv": "split_csv/1cls.csv"},
    description="VisA: <class>/Data/{Images,Masks}/... with split_csv/1cls.csv",
)
