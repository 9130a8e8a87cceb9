"""DICOM pixel pipeline: stored values -> modality values (HU) -> 8-bit display -> model size.

* Modality LUT: rescale slope/intercept (CT in Hounsfield units) in float32, or the file's
  Modality LUT Sequence through pydicom.
* Display: a named window preset (CT), the file's own window / VOI LUT, or percentile
  normalisation (MR, per volume); MONOCHROME1 is inverted afterwards so that "high value
  = bright" holds for every output.
* Size: ``pad`` (default) scales the longer side to ``size`` and pads the rest with black,
  keeping the aspect ratio; ``stretch`` resizes to ``size`` x ``size``. Masks use nearest
  neighbour and the same geometry, so they stay aligned.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from PIL import Image

# Centre / width in HU (STACK_NOTES; common radiology defaults).
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "bone": (600.0, 2800.0),
    "lung": (-600.0, 1500.0),
    "soft_tissue": (50.0, 350.0),
    "liver": (60.0, 150.0),
    "mediastinum": (50.0, 350.0),
}
DISPLAY_MODES = ("file", "percentile")  # besides preset names and "C/W" literals


def parse_display(spec: str) -> tuple[str, tuple[float, float] | None]:
    """``"brain"`` / ``"40/80"`` -> ("window", (40, 80)); ``"file"`` / ``"percentile"`` -> (mode, None)."""
    s = str(spec).strip().lower().replace(" ", "_")
    if s in WINDOW_PRESETS:
        return "window", WINDOW_PRESETS[s]
    if s in DISPLAY_MODES:
        return s, None
    m = re.fullmatch(r"(-?\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)", s)
    if m and float(m.group(2)) > 0:
        return "window", (float(m.group(1)), float(m.group(2)))
    raise ValueError(
        f"unknown display {spec!r}: use a preset ({', '.join(WINDOW_PRESETS)}), 'C/W' (e.g. 40/80), "
        "'file' (the file's own window/VOI LUT) or 'percentile'"
    )


def modality_values(ds: Any, arr: np.ndarray) -> np.ndarray:
    """Stored values -> modality values (float32). Fast path for plain rescale slope/intercept."""
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    slope, intercept = rescale(ds)
    out = arr.astype(np.float32)
    if slope != 1.0:
        out *= slope
    if intercept != 0.0:
        out += intercept
    return out


def rescale(ds: Any) -> tuple[float, float]:
    """(slope, intercept): top level, else the enhanced multi-frame shared functional group."""
    src = ds
    if "RescaleSlope" not in ds and "SharedFunctionalGroupsSequence" in ds:
        shared = ds.SharedFunctionalGroupsSequence
        if len(shared) and "PixelValueTransformationSequence" in shared[0]:
            src = shared[0].PixelValueTransformationSequence[0]
    return float(src.get("RescaleSlope", 1) or 1), float(src.get("RescaleIntercept", 0) or 0)


def window_uint8(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """Linear window (DICOM C.11.2.1.2 simplified to the continuous form) -> 0..255."""
    lo = center - width / 2.0
    scale = 255.0 / max(width, 1e-6)
    out = (values - lo) * scale
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def _first(v: Any) -> Any:
    from pydicom.multival import MultiValue

    if isinstance(v, (MultiValue, list, tuple)):
        return v[0] if len(v) else None
    return v


def file_window(ds: Any) -> tuple[float, float] | None:
    """The first Window Center/Width pair of the file (already in modality units), if any."""
    c, w = ds.get("WindowCenter"), ds.get("WindowWidth")
    if c is None or w is None:
        return None
    try:
        c, w = float(_first(c)), float(_first(w))
    except (TypeError, ValueError):
        return None
    return (c, w) if w > 0 else None


def voi_lut_uint8(ds: Any, stored: np.ndarray) -> np.ndarray:
    """Apply the file's VOI LUT Sequence through pydicom and stretch its output range."""
    from pydicom.pixels import apply_voi_lut

    out = np.asarray(apply_voi_lut(stored, ds, index=0), dtype=np.float32)
    lo, hi = float(out.min()), float(out.max())
    return percentile_uint8(out, (lo, hi))


def percentile_range(volume: np.ndarray, low: float, high: float) -> tuple[float, float]:
    sample = volume.ravel()
    if sample.size > 2_000_000:  # a strided sample is plenty for two percentiles
        sample = sample[:: sample.size // 1_000_000]
    lo, hi = np.percentile(sample, [low, high])
    return float(lo), float(hi)


def percentile_uint8(values: np.ndarray, rng: tuple[float, float]) -> np.ndarray:
    lo, hi = rng
    if hi <= lo:
        return np.zeros(values.shape, np.uint8)
    out = (values - lo) * (255.0 / (hi - lo))
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def fit_size(img: np.ndarray, size: int, mode: str, nearest: bool = False) -> np.ndarray:
    """Resize a uint8 HxW or HxWx3 image to ``size`` x ``size`` (see module doc)."""
    h, w = img.shape[:2]
    resample = Image.NEAREST if nearest else Image.BILINEAR
    if mode == "stretch":
        if (h, w) == (size, size):
            return img
        return np.asarray(Image.fromarray(img).resize((size, size), resample))
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = img if (nh, nw) == (h, w) else np.asarray(Image.fromarray(img).resize((nw, nh), resample))
    if (nh, nw) == (size, size):
        return resized
    out = np.zeros((size, size, *img.shape[2:]), np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = resized
    return out


def to_rgb(img: np.ndarray) -> np.ndarray:
    """Grey -> RGB by channel replication."""
    return img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2)
