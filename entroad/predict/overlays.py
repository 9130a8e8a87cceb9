"""Overlay pictures of predictions: the image beside its anomaly map, with score and verdict."""

from __future__ import annotations

import re

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw

OVERLAY_MAX_SIDE = 1024  # overlays of huge scans are capped (each panel) to keep folders small
OVERLAY_MIN_SIDE = 256  # thumbnails are enlarged so the overlay (and its caption) stays readable
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def overlay_name(item_id: str) -> str:
    """``sub/a.jpg`` -> ``sub__a_jpg.png`` (flat, unique per id, filesystem-safe)."""
    return _UNSAFE.sub("_", item_id.replace("/", "__").replace(".", "_")).strip("_") + ".png"


def overlay_image(image: Image.Image, anomaly_map: np.ndarray, score: float, flagged: bool | None, random_init: bool) -> Image.Image:
    """The image beside a jet overlay of its anomaly map (map in [0, 1] at the image's size)."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    heat = colormaps["jet"](np.clip(anomaly_map, 0, 1))[..., :3]
    blend = 0.55 * rgb + 0.45 * heat
    h, w = rgb.shape[:2]
    band = 34
    canvas = Image.new("RGB", (2 * w + 6, h + band), "white")
    canvas.paste(image.convert("RGB"), (0, band))
    canvas.paste(Image.fromarray((blend * 255).astype(np.uint8)), (w + 6, band))
    draw = ImageDraw.Draw(canvas)
    verdict = "" if flagged is None else ("  FLAGGED" if flagged else "  below threshold")
    draw.text((4, 3), f"score {score:.4f}{verdict}", fill=(179, 38, 30) if flagged else (0, 0, 0))
    if random_init:
        draw.text((4, 18), "RANDOM-INIT BACKBONE: not a real detection", fill=(179, 38, 30))
    return canvas


def fit_panel(image: Image.Image) -> Image.Image:
    """Overlay panel size: the original, capped for huge scans and raised for thumbnails."""
    w, h = image.size
    scale = min(OVERLAY_MAX_SIDE / max(w, h), max(1.0, OVERLAY_MIN_SIDE / min(w, h)))
    if abs(scale - 1.0) < 1e-9:
        return image
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)


