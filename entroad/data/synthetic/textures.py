"""Procedural texture families for the bundled industrial sample data (numpy + scipy only).

A texture is drawn in two steps: :func:`draw_texture` samples its parameters (angle,
frequency, phase, palette, noise seed) from a generator, :func:`render` turns them into an
image. Keeping the two apart lets the ``texture_irregularity`` defect re-render the *same*
texture with a changed frequency/orientation inside a region.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

FAMILIES: tuple[str, ...] = ("stripes", "grid", "dots", "wood", "marble", "fabric", "metal", "leather")

# (hue range, saturation range, value range) of the two main colours of each family.
_PALETTES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "stripes": ((0.0, 1.0), (0.3, 0.8), (0.35, 0.9)),
    "grid": ((0.0, 1.0), (0.2, 0.7), (0.4, 0.9)),
    "dots": ((0.0, 1.0), (0.3, 0.8), (0.35, 0.9)),
    "wood": ((0.05, 0.11), (0.45, 0.75), (0.35, 0.8)),
    "marble": ((0.0, 1.0), (0.0, 0.12), (0.6, 0.95)),
    "fabric": ((0.0, 1.0), (0.25, 0.7), (0.35, 0.85)),
    "metal": ((0.55, 0.65), (0.0, 0.08), (0.5, 0.8)),
    "leather": ((0.02, 0.1), (0.35, 0.7), (0.2, 0.6)),
}


@dataclass(frozen=True)
class Texture:
    family: str
    angle: float  # radians
    period: float  # pixels per cycle of the main structure
    phase: float
    colors: tuple[tuple[float, float, float], ...]  # main, secondary, accent (RGB 0..1)
    seed: int  # noise seed, so a re-render is identical

    def altered(self, rng: np.random.Generator) -> Texture:
        """Same family and palette, visibly different scale and orientation (an irregularity)."""
        factor = rng.uniform(1.8, 2.6)
        period = self.period / factor if rng.random() < 0.5 else self.period * factor
        colors = self.colors
        if self.family in ("grid", "dots") or rng.random() < 0.3:  # thin-line patterns: flip fill
            colors = (colors[1], colors[0], colors[2])
        return replace(
            self,
            colors=colors,
            angle=self.angle + rng.choice([-1, 1]) * rng.uniform(np.pi / 5, np.pi / 2),
            period=float(np.clip(period, 3.0, 200.0)),
            phase=float(rng.uniform(0, 2 * np.pi)),
            seed=int(rng.integers(2**31)),
        )


def _color(rng: np.random.Generator, family: str) -> tuple[float, float, float]:
    (h0, h1), (s0, s1), (v0, v1) = _PALETTES[family]
    return colorsys.hsv_to_rgb(rng.uniform(h0, h1), rng.uniform(s0, s1), rng.uniform(v0, v1))


def draw_texture(family: str, size: int, rng: np.random.Generator) -> Texture:
    """Random parameters of one ``family`` texture for a ``size`` x ``size`` image."""
    if family not in FAMILIES:
        raise ValueError(f"unknown texture family {family!r}; choose one of {FAMILIES}")
    main = _color(rng, family)
    second = _color(rng, family)
    # Keep the two main colours apart in brightness so the structure stays visible.
    if abs(sum(main) - sum(second)) < 0.45:
        second = tuple(float(np.clip(c * 0.55, 0, 1)) for c in second)
    accent = _color(rng, family)
    periods = {"stripes": (10, 26), "grid": (14, 32), "dots": (12, 26), "wood": (14, 34),
               "marble": (40, 90), "fabric": (5, 9), "metal": (20, 60), "leather": (5, 10)}
    lo, hi = periods[family]
    scale = size / 256.0
    return Texture(
        family=family,
        angle=float(rng.uniform(0, np.pi)),
        period=float(rng.uniform(lo, hi) * max(scale, 0.4)),
        phase=float(rng.uniform(0, 2 * np.pi)),
        colors=(tuple(main), tuple(second), tuple(accent)),
        seed=int(rng.integers(2**31)),
    )


def smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-filtered white noise (a cheap value noise)."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return (n - n.mean()) / (n.std() + 1e-6)


def fbm(shape: tuple[int, int], base_sigma: float, rng: np.random.Generator, octaves: int = 3) -> np.ndarray:
    out = np.zeros(shape, np.float32)
    amp, total = 1.0, 0.0
    for i in range(octaves):
        out += amp * smooth_noise(shape, max(base_sigma / 2**i, 0.6), rng)
        total += amp
        amp *= 0.5
    return out / total


def _coords(size: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    c, s = np.cos(angle), np.sin(angle)
    return x * c + y * s, -x * s + y * c


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _mix(a: tuple[float, ...], b: tuple[float, ...], w: np.ndarray) -> np.ndarray:
    a_, b_ = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a_ * (1 - w[..., None]) + b_ * w[..., None]


def _stripes(size: int, t: Texture, rng: np.random.Generator) -> np.ndarray:
    u, _ = _coords(size, t.angle)
    s = np.sin(2 * np.pi * u / t.period + t.phase + 0.6 * fbm((size, size), size / 6, rng))
    return _mix(t.colors[0], t.colors[1], _smoothstep(-0.35, 0.35, s))


def _grid(size: int, t: Texture, rng: np.random.Generator) -> np.ndarray:
    u, v = _coords(size, t.angle)
    fu = np.abs(((u / t.period + t.phase) % 1.0) - 0.5)
    fv = np.abs(((v / t.period + t.phase * 0.7) % 1.0) - 0.5)
    thick = 0.5 - 2.2 / t.period
    line = np.maximum(_smoothstep(thick - 0.04, thick, fu), _smoothstep(thick - 0.04, thick, fv))
    return _mix(t.colors[0], t.colors[1], line)


def _dots(size: int, t: Texture, rng: np.random.Generator) -> np.ndarray:
    u, v = _coords(size, t.angle)
    row = np.floor(v / t.period)
    cu = ((u / t.period + 0.5 * (row % 2) + t.phase) % 1.0) - 0.5
    cv = ((v / t.period) % 1.0) - 0.5
    r = np.sqrt(cu**2 + cv**2)
    radius = 0.22 + 0.1 * (t.seed % 7) / 7
    return _mix(t.colors[0], t.colors[1], _smoothstep(radius + 0.05, radius - 0.05, r))


def _wood(size: int, t: Texture, rng: np.random.Generator) -> np.ndarray:
    u, v = _coords(size, t.angle)
    warp = fbm((size, size), size / 5, rng)
    rings = (v / t.period + 0.8 * warp + 0.002 * (u - size / 2) ** 2 / t.period + t.phase) % 1.0
    tone = _smoothstep(0.0, 0.6, rings) * _smoothstep(1.0, 0.8, rings)
    fibre = ndimage.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), (0.6, 6.0))
    fibre = ndimage.rotate(fibre, np.degrees(t.angle), reshape=False, mode="reflect", order=1)
    img = _mix(t.colors[1], t.colors[0], np.clip(tone, 0, 1))
    return img * (1 + 0.25 * fibre[..., None] / (fibre.std() + 1e-6) * 0.3)


def _marble(size: int, t: Texture, rng: np.random.Generator) -> np.ndarray:
    u, _ = _coords(size, t.angle)
    turb = fbm((size, size), size / 8, rng, octaves=4)
    s = np.sin(2 * np.pi * u / t.period + 5.0 * turb + t.phase)
    veins = (1 - np.abs(s)) ** 10
    cloud = 0.06 * fbm((size, size), size / 10, rng)[..., None]
    vein_col = tuple(c * 0.45 for c in t.colors[2])
    return _mix(t.colors[0], vein_col, veins) + cloud


def _fabric(size: int, t: Texture, rng: np.random.Generator) -> np.ndarray:
    u, v = _coords(size, t.angle)
    a, b = np.floor(u / t.period), np.floor(v / t.period)
    over = ((a + b) % 2) == 0
    fu, fv = (u / t.period) % 1.0, (v / t.period) % 1.0
    shade = np.where(over, np.sin(np.pi * fu), np.sin(np.pi * fv))
    colour = np.where(over[..., None], np.asarray(t.colors[0], np.float32), np.asarray(t.colors[1], np.float32) * 0.5 + np.asarray(t.colors[0], np.float32) * 0.5)
    fuzz = 0.05 * smooth_noise((size, size), 0.8, rng)[..., None]
    return colour * (0.6 + 0.4 * shade[..., None]) + fuzz


def _metal(size: int, t: Texture, rng: np.random.Generator) -> np.ndarray:
    pad = size // 2
    big = size + 2 * pad
    brush = ndimage.gaussian_filter(rng.standard_normal((big, big)).astype(np.float32), (0.7, t.period))
    brush = ndimage.rotate(brush, np.degrees(t.angle), reshape=False, mode="reflect", order=1)
    brush = brush[pad : pad + size, pad : pad + size]
    brush = (brush - brush.mean()) / (brush.std() + 1e-6)
    u, _ = _coords(size, t.angle + 1.2)
    light = 0.12 * np.sin(np.pi * u / size + t.phase)
    base = np.asarray(t.colors[0], np.float32)
    return base * (1 + 0.08 * brush[..., None] + light[..., None])


def _leather(size: int, t: Texture, rng: np.random.Generator) -> np.ndarray:
    n = smooth_noise((size, size), t.period / 2.5, rng)
    creases = (1 - np.abs(np.tanh(n * 1.2))) ** 4
    bumps = 0.5 + 0.5 * np.tanh(smooth_noise((size, size), t.period / 4, rng))
    pores = smooth_noise((size, size), 0.8, rng) > 2.2
    tone = 0.05 * fbm((size, size), size / 8, rng)
    img = _mix(t.colors[0], tuple(c * 0.45 for c in t.colors[0]), np.clip(creases + 0.2 * bumps, 0, 1))
    return (img + tone[..., None]) * np.where(pores, 0.75, 1.0)[..., None]


_RENDERERS = {
    "stripes": _stripes, "grid": _grid, "dots": _dots, "wood": _wood,
    "marble": _marble, "fabric": _fabric, "metal": _metal, "leather": _leather,
}


def render(t: Texture, size: int) -> np.ndarray:
    """Float32 HxWx3 image in [0, 1] (deterministic for a given :class:`Texture`)."""
    rng = np.random.default_rng(t.seed)
    img = _RENDERERS[t.family](size, t, rng)
    img = img + 0.012 * rng.standard_normal(img.shape).astype(np.float32)  # sensor noise
    return np.clip(img, 0.0, 1.0).astype(np.float32)
