"""Procedural defects: each paints onto a float image and returns the affected pixels.

Localised defects (scratch, hole, crack) are thin or small; diffuse ones (stain, colour
drift, texture irregularity) cover soft-edged regions whose mask is where the blend weight
exceeds one half. Defect colours are chosen *relative to the local texture* (brighter on
dark surfaces, darker on bright ones, often with a hue change) so a detector cannot find
them by looking for the darkest pixels.
"""

from __future__ import annotations

import colorsys

import numpy as np
from scipy import ndimage

from entroad.data.synthetic.textures import Texture, render, smooth_noise

LOCALISED_DEFECTS: tuple[str, ...] = ("scratch", "hole", "crack")
DIFFUSE_DEFECTS: tuple[str, ...] = ("stain", "color_drift", "texture_irregularity")
DEFECTS: tuple[str, ...] = LOCALISED_DEFECTS + DIFFUSE_DEFECTS


def _luma(c: np.ndarray) -> float:
    return float(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])


def contrast_color(img: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A colour clearly different from the texture under ``region`` but inside its range."""
    mean = img[region].mean(axis=0) if region.any() else img.reshape(-1, 3).mean(axis=0)
    lum = _luma(mean)
    if lum < 0.45:
        sign = 1.0
    elif lum > 0.6:
        sign = -1.0
    else:
        sign = rng.choice([-1.0, 1.0])
    target = float(np.clip(lum + sign * rng.uniform(0.25, 0.4), 0.12, 0.95))
    h, s, _ = colorsys.rgb_to_hsv(*np.clip(mean, 0, 1))
    if rng.random() < 0.5:  # often also a hue change (rust, paint, dirt...)
        h, s = rng.uniform(0, 1), max(s, rng.uniform(0.3, 0.6))
    rgb = np.asarray(colorsys.hsv_to_rgb(h, s, 1.0), np.float32)
    return np.clip(rgb * target / max(_luma(rgb), 1e-3), 0, 1).astype(np.float32)


def _centre(size: int, rng: np.random.Generator, margin: float = 0.2) -> np.ndarray:
    return rng.uniform(margin * size, (1 - margin) * size, 2)


def _stroke_mask(points: np.ndarray, size: int, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Soft alpha + binary mask of a polyline given as (N, 2) xy points."""
    line = np.zeros((size, size), bool)
    pts = np.round(points).astype(int)
    ok = (pts[:, 0] >= 0) & (pts[:, 0] < size) & (pts[:, 1] >= 0) & (pts[:, 1] < size)
    line[pts[ok, 1], pts[ok, 0]] = True
    dist = ndimage.distance_transform_edt(~line)
    alpha = np.clip(width / 2 + 0.5 - dist, 0, 1).astype(np.float32)
    return alpha, alpha > 0.25


def _walk(start: np.ndarray, angle: float, steps: int, turn: float, rng: np.random.Generator) -> np.ndarray:
    pts = [start]
    for _ in range(steps):
        angle += rng.normal(0, turn)
        pts.append(pts[-1] + 0.7 * np.array([np.cos(angle), np.sin(angle)]))
    return np.array(pts)


def _blend(img: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return img * (1 - alpha[..., None]) + colour * alpha[..., None]


def scratch(img: np.ndarray, t: Texture, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = img.shape[0]
    length = rng.uniform(0.3, 0.65) * size
    pts = _walk(_centre(size, rng, 0.25), rng.uniform(0, 2 * np.pi), int(length / 0.7), 0.015, rng)
    alpha, mask = _stroke_mask(pts, size, rng.uniform(1.5, 3.0) * max(size / 256, 0.6))
    colour = contrast_color(img, mask, rng)
    return _blend(img, colour, 0.9 * alpha), mask


def crack(img: np.ndarray, t: Texture, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = img.shape[0]
    steps = int(rng.uniform(0.2, 0.4) * size / 0.7)
    main = _walk(_centre(size, rng, 0.3), rng.uniform(0, 2 * np.pi), steps, 0.25, rng)
    parts = [main]
    for _ in range(int(rng.integers(1, 3))):  # side branches
        k = int(rng.integers(steps // 4, steps))
        parts.append(_walk(main[k], rng.uniform(0, 2 * np.pi), steps // 3, 0.3, rng))
    alpha, mask = _stroke_mask(np.concatenate(parts), size, rng.uniform(1.2, 2.2) * max(size / 256, 0.6))
    colour = contrast_color(img, ndimage.binary_dilation(mask, iterations=3), rng)
    return _blend(img, colour, alpha), mask


def hole(img: np.ndarray, t: Texture, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = img.shape[0]
    cx, cy = _centre(size, rng)
    rx, ry = rng.uniform(0.035, 0.08, 2) * size
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    r = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    inside = r <= 1.0
    colour = contrast_color(img, inside, rng)
    # Interior shading: a gradient toward one side (depth), plus a bright rim (edge highlight).
    side = ((x - cx) * np.cos(t.phase) + (y - cy) * np.sin(t.phase)) / max(rx, ry)
    fill = colour * (0.85 + 0.15 * np.clip(side, -1, 1))[..., None]
    out = np.where(inside[..., None], fill, img)
    rim = (r > 0.85) & (r <= 1.15)
    out = np.where(rim[..., None], np.clip(out * 0.5 + 0.5 * np.clip(colour + 0.25, 0, 1), 0, 1), out)
    return out, r <= 1.15


def _blob(size: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Soft irregular region in [0, 1] around a random centre."""
    cx, cy = _centre(size, rng, 0.25)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2) / radius
    d = d + 0.35 * smooth_noise((size, size), radius / 3, rng)
    return np.clip((1.1 - d) / 0.15, 0, 1).astype(np.float32)


def stain(img: np.ndarray, t: Texture, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = img.shape[0]
    alpha = _blob(size, rng.uniform(0.1, 0.22) * size, rng)
    mask = alpha > 0.5
    colour = contrast_color(img, mask, rng)
    strength = rng.uniform(0.6, 0.8)
    # A darker/lighter ring at the stain boundary (tide line), as dried liquids leave.
    ring = ((alpha > 0.35) & (alpha < 0.7)).astype(np.float32) * 0.15
    return _blend(img, colour, strength * alpha + ring * (alpha > 0)), mask


def color_drift(img: np.ndarray, t: Texture, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = img.shape[0]
    alpha = _blob(size, rng.uniform(0.2, 0.35) * size, rng)
    mask = alpha > 0.5
    gains = rng.uniform(0.65, 1.35, 3).astype(np.float32)
    while np.ptp(gains) < 0.4:  # a real hue change, not just brightness
        gains = rng.uniform(0.65, 1.35, 3).astype(np.float32)
    # Plus an additive tint, which is what still shows on dark surfaces.
    direction = rng.standard_normal(3).astype(np.float32)
    shift = direction / (np.linalg.norm(direction) + 1e-6) * rng.uniform(0.14, 0.22)
    drifted = np.clip(img * gains + shift, 0, 1)
    return img * (1 - alpha[..., None]) + drifted * alpha[..., None], mask


def texture_irregularity(img: np.ndarray, t: Texture, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = img.shape[0]
    alpha = _blob(size, rng.uniform(0.15, 0.28) * size, rng)
    other = render(t.altered(rng), size)
    # Stochastic textures (metal, leather...) also get a contrast change so the patch shows.
    mean = other.reshape(-1, 3).mean(axis=0)
    other = np.clip(mean + (other - mean) * rng.uniform(1.4, 1.8), 0, 1)
    return img * (1 - alpha[..., None]) + other * alpha[..., None], alpha > 0.5


APPLY = {
    "scratch": scratch, "hole": hole, "crack": crack,
    "stain": stain, "color_drift": color_drift, "texture_irregularity": texture_irregularity,
}
