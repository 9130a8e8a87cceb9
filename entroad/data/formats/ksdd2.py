"""KolektorSDD2: images and ``_GT`` masks side by side; the mask decides the label.

::

    train/10000.png   train/10000_GT.png
    test/20000.png    test/20000_GT.png     (an all-black GT = a normal image)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from entroad.data.formats.base import LABEL_FROM_MASK, ImageFormat, RawItem, Scan, images_in, rel, require_dir
from entroad.data.formats.fields import bool_option, checked, class_option


def _scan(source: Path, options: dict[str, Any]) -> Scan:
    require_dir(source, "source")
    cls = class_option(options, "ksdd2")
    scan = Scan()
    splits = ("train", "test") if bool_option(options, "ksdd2", "include_train") else ("test",)
    for split in splits:
        files = images_in(source / split)
        masks = {f.stem[:-3]: f for f in files if f.stem.upper().endswith("_GT")}
        images = [f for f in files if not f.stem.upper().endswith("_GT")]
        stems = {f.stem for f in images}
        for img in images:
            mask = masks.get(img.stem)
            if mask is None:
                scan.skip(rel(img, source), "image without its _GT mask")
                continue
            scan.items.append(
                RawItem(img, LABEL_FROM_MASK, cls, split, mask, None, rel(img, source))
            )
        for stem in sorted(set(masks) - stems):
            scan.skip(rel(masks[stem], source), "mask without image")
    return checked(scan)


FORMAT = ImageFormat(
    name="ksdd2", domain="industrial", scan=_scan,
    options={"class_name": "kolektor", "include_train": True},
    description="KolektorSDD2: {train,test}/<id>.png + <id>_GT.png (label from the mask)",
)
