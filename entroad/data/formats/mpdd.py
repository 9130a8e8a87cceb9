"""MPDD (Metal Parts Defect Detection): the MVTec AD layout, same names and ``_mask`` suffix.

::

    <class>/train/good/000.png
    <class>/test/<defect>/000.png
    <class>/ground_truth/<defect>/000_mask.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from entroad.data.formats.base import ImageFormat, Scan
from entroad.data.formats.mvtec import scan_mvtec_like


def _scan(source: Path, options: dict[str, Any]) -> Scan:
    return scan_mvtec_like(source, options, mask_suffixes=("_mask",))


FORMAT = ImageFormat(
    name="mpdd",
    domain="industrial",
    scan=_scan,
    options={"include_train": True},
    description="MPDD: MVTec AD layout (<class>/test/<defect>, ground_truth/<defect>/*_mask.png)",
)
