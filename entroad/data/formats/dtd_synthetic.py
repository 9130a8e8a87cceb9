"""DTD-Synthetic: MVTec-style folders per texture class, defects under ``bad``.

::

    Woven_001/train/good/000.png
    Woven_001/test/good/000.png
    Woven_001/test/bad/000.png
    Woven_001/ground_truth/bad/000_mask.png   (some copies name masks 000.png)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from entroad.data.formats.base import ImageFormat, Scan
from entroad.data.formats.mvtec import scan_mvtec_like


def _scan(source: Path, options: dict[str, Any]) -> Scan:
    return scan_mvtec_like(source, options, mask_suffixes=("_mask", ""))


FORMAT = ImageFormat(
    name="dtd-synthetic",
    domain="industrial",
    scan=_scan,
    options={"include_train": True},
    description="DTD-Synthetic: <texture>/test/{good,bad}, ground_truth/bad/*_mask.png",
)
