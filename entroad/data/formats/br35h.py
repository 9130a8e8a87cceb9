"""Br35H (brain tumour detection 2020): ``yes``/``no`` folders; ``pred`` is unlabelled.

::

    yes/y0.jpg    tumour
    no/no0.jpg    normal
    pred/pred0.jpg  (no label: reported as skipped)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from entroad.data.formats.base import ImageFormat, Scan
from entroad.data.formats.paired import scan_yes_no


def _scan(source: Path, options: dict[str, Any]) -> Scan:
    return scan_yes_no(source, options["class_name"], anomaly_type="tumor", ignore=("pred",))


FORMAT = ImageFormat(
    name="br35h", domain="medical", scan=_scan, options={"class_name": "brain"}, masks=False,
    description="Br35H: yes/ and no/ folders (pred/ is unlabelled and skipped), image-level only",
)
