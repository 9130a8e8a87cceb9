"""BTAD (BeanTech): MVTec-like with ``ok``/``ko`` folders and masks named like their image.

::

    01/train/ok/0000.bmp
    01/test/ok/0000.bmp
    01/test/ko/0000.bmp
    01/ground_truth/ko/0000.png        (class 03 ships .bmp masks; no ``_mask`` suffix)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from entroad.data.formats.base import ImageFormat, Scan
from entroad.data.formats.mvtec import scan_mvtec_like


def _scan(source: Path, options: dict[str, Any]) -> Scan:
    return scan_mvtec_like(source, options, normal_names=("ok", "good"), mask_suffixes=("", "_mask"))


FORMAT = ImageFormat(
    name="btad",
    domain="industrial",
    scan=_scan,
    options={"include_train": True},
    description="BTAD: <class>/{train,test}/{ok,ko}/*.bmp|png + ground_truth/ko/<same stem>.png|bmp",
)
