"""Helpers shared by the medical readers: yes/no folders and image/mask folder pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from entroad.data.formats.base import ImageFormat, RawItem, Scan, images_in, rel, require_dir, stem_index
from entroad.data.formats.fields import checked, class_option
from entroad.errors import DatasetError


def find_dir(source: Path, names: tuple[str, ...], depth: int = 2) -> Path | None:
    """First folder named one of ``names`` (case-insensitive) within ``depth`` levels."""
    wanted = [n.lower() for n in names]
    level = [source]
    for _ in range(depth + 1):
        for name in wanted:  # respect the preference order of ``names`` at each level
            for d in level:
                if d.name.lower() == name and d.is_dir():
                    return d
        level = sorted(c for d in level for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))
    return None


def scan_yes_no(
    source: Path, cls: str, yes: tuple[str, ...] = ("yes",), no: tuple[str, ...] = ("no",),
    anomaly_type: str = "abnormal", ignore: tuple[str, ...] = (),
) -> Scan:
    """Image-level data: anomalous images in a ``yes`` folder, normal ones in ``no``."""
    require_dir(source, "source")
    cls = class_option({"class_name": cls}, "yes/no folders")
    ydir, ndir = find_dir(source, yes), find_dir(source, no)
    if ydir is None or ndir is None:
        raise DatasetError(f"{source}: expected folders {yes[0]!r} and {no[0]!r} (anomalous / normal images)")
    scan = Scan(masks_expected=False)
    for folder, label in ((ndir, 0), (ydir, 1)):
        for img in images_in(folder):
            scan.items.append(RawItem(img, label, cls, "test", None, anomaly_type if label else "good", rel(img, source)))
    for name in ignore:
        d = find_dir(source, (name,))
        for img in images_in(d) if d else []:
            scan.skip(rel(img, source), f"unlabelled ({name} folder)")
    return checked(scan)


def scan_pairs(
    source: Path, cls: str, image_dirs: tuple[str, ...], mask_dirs: tuple[str, ...],
    mask_suffixes: tuple[str, ...] = ("",), anomaly_type: str = "lesion",
) -> Scan:
    """Every image is anomalous and has a mask with the same stem (+ optional suffix)."""
    require_dir(source, "source")
    cls = class_option({"class_name": cls}, "image/mask folders")
    idir, mdir = find_dir(source, image_dirs), find_dir(source, mask_dirs)
    if idir is None or mdir is None:
        raise DatasetError(
            f"{source}: expected an image folder ({' | '.join(image_dirs)}) and a mask folder "
            f"({' | '.join(mask_dirs)})"
        )
    masks = stem_index(images_in(mdir), mask_suffixes)
    scan = Scan(masks_expected=True)
    used: set[Path] = set()
    for img in images_in(idir):
        mask = masks.get(img.stem)
        if mask is not None:
            used.add(mask)
        scan.items.append(RawItem(img, 1, cls, "test", mask, anomaly_type, rel(img, source)))
    for m in sorted(set(masks.values()) - used):
        scan.skip(rel(m, source), "mask without image")
    return checked(scan)


POLYP_IMAGE_DIRS = ("images", "image", "Original", "imgs")
POLYP_MASK_DIRS = ("masks", "mask", "Ground Truth", "GroundTruth", "gt")


def polyp_format(name: str, title: str) -> ImageFormat:
    """The layout the polyp-segmentation sets share (CVC-ColonDB, CVC-ClinicDB, Kvasir-SEG):
    ``images/`` + ``masks/`` (prepared copies) or ``Original/`` + ``Ground Truth/`` (original
    releases) with matching names; every image shows a polyp."""

    def scan(source: Path, options: dict[str, Any]) -> Scan:
        return scan_pairs(source, class_option(options, name), POLYP_IMAGE_DIRS, POLYP_MASK_DIRS,
                          mask_suffixes=("", "_mask"), anomaly_type="polyp")

    return ImageFormat(
        name=name, domain="medical", scan=scan, options={"class_name": "colon"},
        description=f"{title}: images/ + masks/ (or Original/ + Ground Truth/) with matching names",
    )
