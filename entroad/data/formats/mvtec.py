"""MVTec AD layout (also the layout of MPDD and DTD-Synthetic; BTAD is a variant).

::

    <class>/train/good/000.png
    <class>/test/good/000.png
    <class>/test/<defect>/000.png
    <class>/ground_truth/<defect>/000_mask.png

``source`` may be the dataset root (one folder per class) or a single class folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from entroad.data.formats.base import (
    ImageFormat,
    RawItem,
    Scan,
    images_in,
    keep_class,
    rel,
    require_dir,
    stem_index,
)
from entroad.data.formats.fields import bool_option, checked


def class_dirs(source: Path) -> list[Path]:
    """Class folders under ``source`` (or ``source`` itself when it is one class)."""
    require_dir(source, "source")
    if (source / "test").is_dir():
        return [source]
    return sorted(p for p in source.iterdir() if p.is_dir() and (p / "test").is_dir())


def scan_mvtec_like(
    source: Path,
    options: dict[str, Any],
    normal_names: tuple[str, ...] = ("good",),
    mask_suffixes: tuple[str, ...] = ("_mask",),
    gt_dir: str = "ground_truth",
) -> Scan:
    scan = Scan()
    include_train = bool_option({"include_train": True, **options}, "mvtec-like", "include_train")
    normal = {n.lower() for n in normal_names}
    for cdir in class_dirs(source):
        cls = cdir.name
        if not keep_class(cls, options):
            continue
        if include_train:
            for sub in sorted(p for p in (cdir / "train").glob("*") if p.is_dir()):
                for img in images_in(sub):
                    scan.items.append(RawItem(img, 0, cls, "train", None, "good", rel(img, source)))
        for sub in sorted(p for p in (cdir / "test").iterdir() if p.is_dir()):
            is_normal = sub.name.lower() in normal
            masks = stem_index(images_in(cdir / gt_dir / sub.name), mask_suffixes) if not is_normal else {}
            used: set[Path] = set()
            for img in images_in(sub):
                mask = masks.get(img.stem)
                if mask is not None:
                    used.add(mask)
                atype = "good" if is_normal else sub.name
                scan.items.append(RawItem(img, int(not is_normal), cls, "test", mask, atype, rel(img, source)))
            for m in sorted(set(masks.values()) - used):
                scan.skip(rel(m, source), "mask without image")
        # Ground-truth folders with no test folder at all (e.g. a deleted defect type).
        gt = cdir / gt_dir
        if gt.is_dir():
            for d in sorted(p for p in gt.iterdir() if p.is_dir() and not (cdir / "test" / p.name).is_dir()):
                for m in images_in(d):
                    scan.skip(rel(m, source), "mask without image")
    return checked(scan)


def _scan(source: Path, options: dict[str, Any]) -> Scan:
    return scan_mvtec_like(source, options, mask_suffixes=(options["mask_suffix"],))


FORMAT = ImageFormat(
    name="mvtec",
    domain="industrial",
    scan=_scan,
    options={"include_train": True, "mask_suffix": "_mask"},
    description="MVTec AD: <class>/{train,test}/<type>/*.png + ground_truth/<type>/*_mask.png",
)
