"""Generic folders: the starting point for a site's own data.

::

    <source>/good/*.png                 normal images        (option ``normal``)
    <source>/<any other folder>/*.png   anomalous images     (option ``anomalous``: list)
    <source>/masks/[<folder>/]<stem>[_mask].png   optional   (option ``masks``)

or the same with one level of class folders (``<source>/<class>/good/...``): the class is
taken from that parent folder, else from ``class_name`` or the source folder's name. Masks
are matched by file stem (with ``mask_suffix`` or ``_mask`` removed), first inside
``masks/<anomalous folder>/``, then directly in ``masks/``. Without a masks folder the
dataset is image-level only. An anomalous image without its mask is kept by default (a
site rarely draws a mask for every defect): it keeps its image-level label and evaluation
leaves it out of pixel metrics; ``missing_masks: skip`` drops such images instead.
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
from entroad.data.formats.fields import checked, class_option, folder_option, split_option
from entroad.data.images import is_image
from entroad.errors import ConfigError, DatasetError


def _all_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image(p)) if folder.is_dir() else []


def _checked_options(options: dict[str, Any]) -> dict[str, Any]:
    """Folder-name options must name folders inside the source (no separators, no '..')."""
    wanted = options.get("anomalous")
    if isinstance(wanted, str):
        wanted = [wanted]
    if wanted is not None and not isinstance(wanted, list):
        raise ConfigError(f"format 'folder': option anomalous must be a folder name or a list of them, got {wanted!r}")
    return {
        **options,
        "normal": folder_option(options["normal"], "folder", "normal"),
        "masks": folder_option(options["masks"], "folder", "masks"),
        "anomalous": [folder_option(a, "folder", "anomalous") for a in wanted] if wanted else None,
        "split": split_option(options, "folder"),
        "class_name": None if options.get("class_name") is None else class_option(options, "folder"),
        "mask_suffix": _suffix(options.get("mask_suffix")),
    }


def _suffix(value: Any) -> str:
    if not isinstance(value, str) or "/" in value or "\\" in value:
        raise ConfigError(f"format 'folder': option mask_suffix must be a plain text such as '_mask', got {value!r}")
    return value


def _role_dirs(cdir: Path, options: dict[str, Any]) -> tuple[Path, list[Path]]:
    normal = cdir / options["normal"]
    wanted = options["anomalous"]
    if wanted:
        anomalous = [cdir / a for a in wanted]
    else:
        skip = {options["normal"], options["masks"]}
        anomalous = sorted(p for p in cdir.iterdir() if p.is_dir() and p.name not in skip and not p.name.startswith("."))
    return normal, anomalous


def _is_class_root(p: Path, options: dict[str, Any]) -> bool:
    return (p / options["normal"]).is_dir()


def _scan(source: Path, options: dict[str, Any]) -> Scan:
    require_dir(source, "source")
    options = _checked_options(options)
    if _is_class_root(source, options):
        classes = [(source, options.get("class_name") or source.name)]
    else:
        classes = [(p, p.name) for p in sorted(source.iterdir()) if p.is_dir() and _is_class_root(p, options)]
    if not classes:
        raise DatasetError(
            f"{source}: no '{options['normal']}' folder of normal images found (directly or one level down); "
            "set the folder names with --normal/--anomalous (options normal/anomalous)"
        )
    suffixes = tuple(dict.fromkeys([options["mask_suffix"], "_mask", ""]))
    scan = Scan()
    any_masks = False
    for cdir, cls in classes:
        if not keep_class(cls, options):
            continue
        normal, anomalous = _role_dirs(cdir, options)
        for img in images_in(normal):
            scan.items.append(RawItem(img, 0, cls, options["split"], None, "good", rel(img, source)))
        mroot = cdir / options["masks"]
        any_masks |= mroot.is_dir()
        top = stem_index(images_in(mroot), suffixes)
        used: set[Path] = set()
        for adir in anomalous:
            if not adir.is_dir():
                raise DatasetError(f"{adir}: anomalous folder not found (option anomalous)")
            inner = stem_index(_all_images(mroot / adir.name), suffixes)
            for img in images_in(adir):
                mask = inner.get(img.stem) or top.get(img.stem)
                if mask is not None:
                    used.add(mask)
                r = rel(img, source)
                scan.items.append(RawItem(img, 1, cls, options["split"], mask, adir.name, r))
        for m in _all_images(mroot):
            if m not in used:
                scan.skip(rel(m, source), "mask without image")
    scan.masks_expected = any_masks
    return checked(scan)


FORMAT = ImageFormat(
    name="folder",
    domain="industrial",
    scan=_scan,
    options={
        "normal": "good",
        "anomalous": None,
        "masks": "masks",
        "mask_suffix": "_mask",
        "class_name": None,
        "split": "test",
        "missing_masks": "keep",
    },
    description="Generic: <src>/[<class>/]good/, other folders anomalous, optional masks/ matched by stem",
)
