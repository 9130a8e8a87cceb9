"""Shared converter: raw items of any image format -> 8-bit PNGs + manifest records.

Every bad-input case is handled here once, for all formats, as a reported skip:
corrupt/truncated images or masks, masks whose size differs from their image, anomalous
images without the mask the layout promises, duplicate files (same bytes) and output
name clashes (``a.png`` and ``a.jpg``). Work runs on a thread pool: Pillow releases the
GIL while decoding and compressing.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from entroad.data.formats.base import LABEL_FROM_MASK, RawItem, Skip
from entroad.data.images import ImageReadError, read_mask, save_png, to_uint8_image
from entroad.data.manifest import Record

NO_MASK = "anomalous image without its mask"  # skip reason category (see entroad.data.skips)
KEPT_NO_MASK = "anomalous_kept_without_mask"  # stats key: kept image-level by missing_masks: keep


@dataclass
class _Done:
    record: Record | None
    skip: Skip | None
    digest: str = ""
    files: tuple[Path, ...] = ()
    empty_anomalous_mask: bool = False
    anomalous_without_mask: bool = False


def output_stem(rel: str) -> str:
    """``bottle/test/crack/000.png`` -> ``bottle/test/crack/000`` (kept for traceability)."""
    p = PurePosixPath(rel)
    return str(p.with_suffix("")) if p.suffix else str(p)


def _decode(path: Path) -> tuple[Image.Image, str]:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as e:  # Pillow raises many types for broken files
        raise ImageReadError(type(e).__name__) from None
    return to_uint8_image(img), digest


def _why(e: Exception) -> str:
    return str(e) if isinstance(e, ImageReadError) else type(e).__name__


def _convert_one(item: RawItem, out_dir: Path, masks_expected: bool, missing_masks: str) -> _Done:
    stem = output_stem(item.rel)
    try:
        img, digest = _decode(item.image)
    except (ImageReadError, OSError) as e:
        return _Done(None, Skip(item.rel, f"corrupt or unreadable image ({_why(e)})"))
    mask_arr: np.ndarray | None = None
    if item.mask is not None and item.label != 0:
        try:
            mask_arr = read_mask(item.mask)
        except (ImageReadError, OSError) as e:
            return _Done(None, Skip(item.rel, f"corrupt or unreadable mask ({_why(e)})"))
        if mask_arr.shape != (img.height, img.width):
            h, w = mask_arr.shape
            return _Done(None, Skip(item.rel, f"mask size differs from image ({w}x{h} vs {img.width}x{img.height})"))
    label = item.label
    if label == LABEL_FROM_MASK:
        label = int(mask_arr is not None and bool(mask_arr.any()))
    if label == 0:
        mask_arr = None  # normal: an all-zero mask is implied (mask: null)
    elif mask_arr is None and masks_expected and missing_masks != "keep":
        return _Done(None, Skip(item.rel, f"{NO_MASK} (dropped by missing_masks: skip)"))
    img_rel = f"images/{stem}.png"
    save_png(img, out_dir / img_rel)
    files = [out_dir / img_rel]
    mask_rel = None
    if mask_arr is not None:
        mask_rel = f"masks/{stem}.png"
        save_png(mask_arr, out_dir / mask_rel)
        files.append(out_dir / mask_rel)
    atype = item.anomaly_type or ("good" if label == 0 else "anomaly")
    if label == 0:
        atype = "good"
    rec = Record(image=img_rel, label=label, cls=item.cls, split=item.split, mask=mask_rel,
                 source_id=item.rel, anomaly_type=atype)
    empty = mask_arr is not None and not mask_arr.any()
    return _Done(rec, None, digest, tuple(files), empty, label == 1 and mask_arr is None and masks_expected)


def convert_items(
    items: list[RawItem],
    out_dir: Path,
    masks_expected: bool,
    options: dict[str, Any],
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> tuple[list[Record], list[Skip], dict[str, int]]:
    """Write every usable item under ``out_dir``; return records, skips and extra counts."""
    skipped: list[Skip] = []
    unique: list[RawItem] = []
    names: dict[str, str] = {}
    for it in items:
        key = output_stem(it.rel).lower()
        if key in names:
            skipped.append(Skip(it.rel, f"duplicate name (same file stem as {names[key]})"))
            continue
        names[key] = it.rel
        unique.append(it)
    missing = str(options.get("missing_masks", "skip"))
    workers = workers or min(8, (os.cpu_count() or 2) + 2)
    records: list[Record] = []
    seen: dict[str, str] = {}
    stats = {"anomalous_with_empty_mask": 0, KEPT_NO_MASK: 0}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for it, done in zip(unique, pool.map(lambda i: _convert_one(i, out_dir, masks_expected, missing), unique), strict=False):
            if progress:
                progress(1)
            if done.skip is not None:
                skipped.append(done.skip)
                continue
            if done.digest in seen:  # identical bytes: keep the first, drop the copy
                for f in done.files:
                    f.unlink(missing_ok=True)
                skipped.append(Skip(it.rel, f"duplicate file (same bytes as {seen[done.digest]})"))
                continue
            seen[done.digest] = it.rel
            stats["anomalous_with_empty_mask"] += int(done.empty_anomalous_mask)
            stats[KEPT_NO_MASK] += int(done.anomalous_without_mask)
            assert done.record is not None
            records.append(done.record)
    return records, skipped, stats
