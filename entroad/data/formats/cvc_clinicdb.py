"""CVC-ClinicDB polyp segmentation: an image folder and a mask folder with the same file names.

::

    images/1.png   masks/1.png          (the common prepared copy)
    Original/1.tif  Ground Truth/1.tif   (the original release)

Every image shows a polyp (anomalous); masks with lossy JPEG noise are thresholded at 127.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from entroad.data.formats.base import ImageFormat, Scan
from entroad.data.formats.paired import scan_pairs

IMAGE_DIRS = ("images", "image", "Original", "imgs")
MASK_DIRS = ("masks", "mask", "Ground Truth", "GroundTruth", "gt")


def _scan(source: Path, options: dict[str, Any]) -> Scan:
    return scan_pairs(source, options["class_name"], IMAGE_DIRS, MASK_DIRS, mask_suffixes=("", "_mask"),
                      anomaly_type="polyp")


FORMAT = ImageFormat(
    name="cvc-clinicdb", domain="medical", scan=_scan, options={"class_name": "colon"},
    description="CVC-ClinicDB: images/ + masks/ (or Original/ + Ground Truth/) with matching names",
)
