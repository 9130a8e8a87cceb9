"""BrainMRI (Kaggle brain tumour detection): image-level ``yes``/``no`` folders.

::

    brain_tumor_dataset/yes/Y1.jpg      tumour (anomalous)
    brain_tumor_dataset/no/1 no.jpeg    normal
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from entroad.data.formats.base import ImageFormat, Scan
from entroad.data.formats.paired import scan_yes_no


def _scan(source: Path, options: dict[str, Any]) -> Scan:
    return scan_yes_no(source, options["class_name"], anomaly_type="tumor")


FORMAT = ImageFormat(
    name="brainmri", domain="medical", scan=_scan, options={"class_name": "brain"}, masks=False,
    description="BrainMRI: yes/ (tumour) and no/ folders, image-level labels only",
)
