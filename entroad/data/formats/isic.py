"""ISIC skin-lesion segmentation (ISBI 2016 / ISIC 2017-2018 task 1): every image is a lesion.

::

    ISBI2016_ISIC_Part1_Test_Data/ISIC_0000003.jpg
    ISBI2016_ISIC_Part1_Test_GroundTruth/ISIC_0000003_Segmentation.png
    (ISIC 2018: ISIC2018_Task1-2_Training_Input/ + ISIC2018_Task1_Training_GroundTruth/*_segmentation.png)

Folder names are found by pattern (``*GroundTruth*`` for masks, ``*Data*``/``*Input*``
for images) unless given as options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from entroad.data.formats.base import ImageFormat, Scan, require_dir
from entroad.data.formats.fields import class_option, folder_option
from entroad.data.formats.paired import scan_pairs
from entroad.errors import DatasetError


def _pick(source: Path, given: str | None, words: tuple[str, ...], avoid: tuple[str, ...] = ()) -> str:
    if given is not None:
        return folder_option(given, "isic", "images/masks")
    for d in sorted(p for p in source.rglob("*") if p.is_dir()):
        name = d.name.lower()
        if any(w in name for w in words) and not any(a in name for a in avoid):
            return d.name
    raise DatasetError(f"{source}: cannot find a folder matching {words}; set it with options images/masks")


def _scan(source: Path, options: dict[str, Any]) -> Scan:
    require_dir(source, "source")
    masks = _pick(source, options["masks"], ("groundtruth", "ground_truth", "masks"))
    images = _pick(source, options["images"], ("data", "input", "images"), avoid=("groundtruth", "ground_truth"))
    if images.lower() == masks.lower():
        raise DatasetError(f"{source}: images and masks are the same folder {images!r}; set options images/masks")
    return scan_pairs(
        source, class_option(options, "isic"), (images,), (masks,),
        mask_suffixes=("_segmentation", "_Segmentation", "_mask", ""), anomaly_type="lesion",
    )


FORMAT = ImageFormat(
    name="isic", domain="medical", scan=_scan,
    options={"class_name": "skin", "images": None, "masks": None},
    description="ISIC: *_Data|*_Input image folder + *_GroundTruth folder of *_Segmentation.png masks",
)
