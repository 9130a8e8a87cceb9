"""Pictures for the review page: the two panels of a predict overlay, thumbnails, and masks
rasterised from a reviewer's boxes and brush strokes."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

# predict's overlay PNG: a caption band on top, then [image | gap | blended overlay].
OVERLAY_BAND = 34
OVERLAY_GAP = 6
PANELS = ("image", "overlay")
THUMB_SIDE = 160


def panel(overlay_png: Path, which: str) -> Image.Image:
    """The bare image (left) or the anomaly-map overlay (right) of a predict overlay."""
    with Image.open(overlay_png) as im:
        im = im.convert("RGB")
        w = (im.width - OVERLAY_GAP) // 2
        x0 = 0 if which == "image" else w + OVERLAY_GAP
        return im.crop((x0, OVERLAY_BAND, x0 + w, im.height))


def png_bytes(image: Image.Image, quality_side: int | None = None) -> bytes:
    if quality_side is not None:
        image = image.copy()
        image.thumbnail((quality_side, quality_side), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


def thumbnail(overlay_png: Path, cache: Path) -> bytes:
    """A small overlay panel, cached on disk (built the first time the page shows it)."""
    if cache.is_file():
        return cache.read_bytes()
    data = png_bytes(panel(overlay_png, "overlay"), THUMB_SIDE)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(cache)
    return data


def mask_from_marks(size: tuple[int, int], marks: Iterable[dict[str, Any]]) -> Image.Image | None:
    """A binary mask (mode L, 0/255) at ``size`` from marks in image fractions; None without marks."""
    marks = list(marks)
    if not marks:
        return None
    w, h = size
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for m in marks:
        if m["type"] == "box":
            x0, x1 = sorted((m["x0"] * w, m["x1"] * w))
            y0, y1 = sorted((m["y0"] * h, m["y1"] * h))
            draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), fill=255)
        else:
            r = max(1.0, m["r"] * max(w, h))
            pts = [(x * w, y * h) for x, y in m["points"]]
            if len(pts) > 1:
                draw.line(pts, fill=255, width=max(1, round(2 * r)), joint="curve")
            for x, y in pts:
                draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return mask
