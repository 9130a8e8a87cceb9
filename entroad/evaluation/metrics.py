"""Anomaly-detection metrics on ranked counts: image level (exact) and the operating point;
the pixel-level accumulator is in :mod:`entroad.evaluation.pixel_metrics`.

Definitions (METHOD.md §8; the conventions of the field's reference implementations):

* **AUROC** — area under the ROC curve, ties scored 1/2 (same as ``sklearn.roc_auc_score``).
* **AP** — ``Σ_n (R_n − R_{n−1}) P_n`` over distinct thresholds, no interpolation (same as
  ``sklearn.average_precision_score``).
* **F1-max** — the best F1 over all distinct thresholds.
* **AUPRO** — area under the per-region-overlap curve up to ``max_fpr`` (default 0.3),
  divided by ``max_fpr`` so it lies in [0, 1] (MVTec AD's official definition). Regions are the
  8-connected components of each ground-truth mask; the FPR is taken over every normal
  pixel of every image. ``PRO(t) = 1/K Σ_regions |{p ∈ R: s_p ≥ t}| / |R|`` — which equals a
  cumulative sum of per-pixel weights ``1/(K |R(p)|)``, so the curve streams like a histogram.
  ``definition="anomalyclip"`` gives AnomalyCLIP's ``cal_pro_score`` instead, the definition
  behind METHOD §9's reference numbers (see :func:`aupro_anomalyclip_from_counts`).

All functions return fractions in [0, 1]; tables multiply by 100.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
import torch

from entroad.errors import EvaluationError, InputError, UndefinedMetricError

IMAGE_KEYS = ("image_auroc", "image_ap", "image_f1max")
PIXEL_KEYS = ("pixel_auroc", "pixel_ap", "pixel_f1max", "pixel_aupro")
METRIC_KEYS = IMAGE_KEYS + PIXEL_KEYS
AUPRO_DEFINITIONS = ("official", "anomalyclip")
# AUPRO by AnomalyCLIP's definition, kept beside pixel_aupro whatever evaluation.aupro says:
# the comparison with METHOD §9 needs the anchors' definition.
ANCHOR_AUPRO_KEY = "pixel_aupro_anomalyclip"
ANOMALYCLIP_PRO_STEPS = 200  # thresholds of AnomalyCLIP's cal_pro_score

DEFAULT_BINS = 1 << 16
DEFAULT_EXACT_LIMIT = 1 << 24  # pixels kept for exact mode before switching to bins
RANGE_TOLERANCE = 1e-4  # float round-off of smoothing/interpolation past [0, 1] is clamped
_CURVE_POINTS = 1000  # points kept for plotting

ArrayLike = np.ndarray | torch.Tensor


# --------------------------------------------------------------------------------------------
# Ranked counts: the one representation every metric below is computed from.
# --------------------------------------------------------------------------------------------
def inverse_sizes(sizes: np.ndarray | torch.Tensor):
    """``1/size`` for region pixels, 0 elsewhere (float64)."""
    if isinstance(sizes, torch.Tensor):
        s = sizes.double()
        return torch.where(s > 0, 1.0 / s.clamp(min=1), torch.zeros_like(s))
    s = sizes.astype(np.float64)
    return np.where(s > 0, 1.0 / np.maximum(s, 1), 0.0)


@dataclass(frozen=True)
class RankedCounts:
    """Per-threshold groups in *descending* score order (ties share a group).

    ``pos``/``neg``: anomalous / normal counts of the group; ``weight``: sum of the region
    weights ``1/|R|`` of its anomalous pixels (pixel level only); ``regions``: number of
    ground-truth regions (the AUPRO normaliser).
    """

    thresholds: np.ndarray
    pos: np.ndarray
    neg: np.ndarray
    weight: np.ndarray | None = None
    regions: int = 0

    @property
    def n_pos(self) -> float:
        return float(self.tps[-1])

    @property
    def n_neg(self) -> float:
        return float(self.fps[-1])

    # Cumulative counts, computed once: every metric and curve below starts from them.
    @cached_property
    def tps(self) -> np.ndarray:
        return np.cumsum(self.pos)

    @cached_property
    def fps(self) -> np.ndarray:
        return np.cumsum(self.neg)


def ranked_counts(
    scores: ArrayLike,
    labels: ArrayLike,
    weights: ArrayLike | None = None,
    region_sizes: ArrayLike | None = None,
) -> RankedCounts:
    """Group ``scores`` by distinct value (descending) with label counts and, for AUPRO,
    weight sums: ``weights`` per sample, or ``region_sizes`` (weight ``1/size``, 0 where the
    size is 0 — cheaper to gather than float64 weights).

    Scores are compared in their own precision (float32 maps are not widened before the
    sort, which is then ~8x faster); tied scores form one group whatever their order.
    """
    s = as_numpy(scores).ravel()
    if s.dtype not in (np.float32, np.float64):
        s = s.astype(np.float64)
    y = as_numpy(labels).ravel().astype(bool, copy=False)
    if s.shape != y.shape:
        raise InputError(f"scores ({s.size}) and labels ({y.size}) differ in length")
    if s.size == 0:
        raise UndefinedMetricError("no samples")
    if not np.isfinite(s).all():
        raise EvaluationError(f"{int((~np.isfinite(s)).sum())} non-finite score(s) (NaN/inf): refusing to compute metrics")
    order = np.argsort(s)[::-1]  # descending; the order inside a tie is irrelevant (grouped below)
    s, y = s[order], y[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    pos = np.add.reduceat(y.astype(np.int64), starts)
    sizes = np.diff(np.r_[starts, s.size])
    w = None
    if weights is not None:
        w = np.add.reduceat(as_numpy(weights).astype(np.float64).ravel()[order], starts)
    elif region_sizes is not None:
        w = np.add.reduceat(inverse_sizes(as_numpy(region_sizes).ravel()[order]), starts)
    return RankedCounts(thresholds=s[starts].astype(np.float64), pos=pos, neg=sizes - pos, weight=w)


def need_both(rc: RankedCounts, what: str) -> None:
    if rc.n_pos == 0:
        raise UndefinedMetricError(f"{what}: no anomalous samples")
    if rc.n_neg == 0:
        raise UndefinedMetricError(f"{what}: no normal samples")


def _roc_points(rc: RankedCounts) -> tuple[np.ndarray, np.ndarray]:
    tps, fps = rc.tps, rc.fps
    return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


def auroc_from_counts(rc: RankedCounts) -> float:
    need_both(rc, "AUROC")
    fpr, tpr = _roc_points(rc)
    return float(np.trapezoid(tpr, fpr))


def _pr_points(rc: RankedCounts) -> tuple[np.ndarray, np.ndarray]:
    keep = (rc.pos + rc.neg) > 0  # empty bins are not thresholds
    tps, fps = rc.tps[keep], rc.fps[keep]
    return tps / rc.n_pos, tps / (tps + fps)


def ap_from_counts(rc: RankedCounts) -> float:
    need_both(rc, "AP")
    recall, precision = _pr_points(rc)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def f1max_from_counts(rc: RankedCounts) -> float:
    need_both(rc, "F1-max")
    tps, fps = rc.tps, rc.fps
    return float(np.max(2.0 * tps / (tps + fps + rc.n_pos)))


def _pro_points(rc: RankedCounts) -> tuple[np.ndarray, np.ndarray]:
    fpr = rc.fps / rc.n_neg
    pro = np.cumsum(rc.weight) / rc.regions
    # Sums of 1/|R| drift by round-off; the curve must end at (1, 1) and never exceed 1.
    return np.r_[0.0, np.minimum(fpr, 1.0), 1.0], np.r_[0.0, np.minimum(pro, 1.0), 1.0]


def area_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Area under the piecewise-linear curve (x non-decreasing) over ``[x[0], x_max]``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x0, x1, y0, y1 = x[:-1], x[1:], y[:-1], y[1:]
    full = x1 <= x_max
    area = float(np.sum((x1[full] - x0[full]) * (y0[full] + y1[full]) / 2.0))
    cross = np.flatnonzero((x0 < x_max) & (x1 > x_max))
    if cross.size:
        i = cross[0]
        y_at = y0[i] + (y1[i] - y0[i]) * (x_max - x0[i]) / (x1[i] - x0[i])
        area += (x_max - x0[i]) * (y0[i] + y_at) / 2.0
    return area


def _check_pro_counts(rc: RankedCounts, max_fpr: float) -> None:
    if rc.weight is None:
        raise InputError("AUPRO needs region weights (pixel-level counts)")
    if rc.regions == 0 or rc.n_pos == 0:
        raise UndefinedMetricError("AUPRO: no annotated anomalous regions")
    if rc.n_neg == 0:
        raise UndefinedMetricError("AUPRO: no normal pixels")
    if not 0.0 < max_fpr <= 1.0:
        raise InputError(f"max_fpr must be in (0, 1], got {max_fpr}")


def aupro_from_counts(rc: RankedCounts, max_fpr: float = 0.3) -> float:
    """The official (MVTec AD) AUPRO: exact PRO curve, area up to max_fpr, ÷ max_fpr."""
    _check_pro_counts(rc, max_fpr)
    fpr, pro = _pro_points(rc)
    return float(area_to(fpr, pro, max_fpr) / max_fpr)


def aupro_anomalyclip_from_counts(rc: RankedCounts, max_fpr: float = 0.3, steps: int = ANOMALYCLIP_PRO_STEPS) -> float:
    """AUPRO as AnomalyCLIP's ``cal_pro_score`` computes it (the definition behind the
    reference numbers of METHOD §9): ``steps`` evenly spaced thresholds from the maps' min
    (included) to their max (excluded), a pixel positive when its score is above the
    threshold, PRO = mean per-region overlap (8-connected regions), points with FPR <
    ``max_fpr`` kept, their FPRs min-max rescaled to [0, 1], trapezoid area.

    Unlike the official (MVTec AD) definition the result is not normalised by ``max_fpr``
    and depends on the score range, so the two differ by a few tenths of a point.
    """
    _check_pro_counts(rc, max_fpr)
    # cal_pro_score builds its grid in the maps' own precision (float32 maps: float32 grid)
    dtype = np.float32 if np.array_equal(rc.thresholds.astype(np.float32), rc.thresholds) else np.float64
    lo, hi = dtype(rc.thresholds[-1]), dtype(rc.thresholds[0])
    if hi <= lo:
        raise UndefinedMetricError("AUPRO (anomalyclip): all scores are equal")
    th = np.arange(lo, hi, (hi - lo) / steps)  # the same grid as np.arange in cal_pro_score
    ascending = rc.thresholds[::-1]
    above = ascending.size - np.searchsorted(ascending, th, side="right")  # groups with score > th
    fpr = np.r_[0.0, rc.fps][above] / rc.n_neg
    pro = np.r_[0.0, np.cumsum(rc.weight)][above] / rc.regions
    keep = fpr < max_fpr
    f, p = fpr[keep], pro[keep]
    if f.size < 2 or f.max() == f.min():
        raise UndefinedMetricError(f"AUPRO (anomalyclip): fewer than two distinct FPRs below {max_fpr:g}")
    f = (f - f.min()) / (f.max() - f.min())
    # FPR falls as the threshold rises: integrate from the highest threshold down
    return float(np.trapezoid(p[::-1], f[::-1]))


def aupro_by_definition(rc: RankedCounts, max_fpr: float = 0.3, definition: str = "official") -> float:
    if definition == "official":
        return aupro_from_counts(rc, max_fpr)
    if definition == "anomalyclip":
        return aupro_anomalyclip_from_counts(rc, max_fpr)
    raise ValueError(f"AUPRO definition must be one of {AUPRO_DEFINITIONS} (official | anomalyclip), got {definition!r}")


# --------------------------------------------------------------------------------------------
# Image level (exact; one score per image is always small enough to keep)
# --------------------------------------------------------------------------------------------
@dataclass
class Curves:
    """Downsampled curves for plotting (x, y pairs)."""

    roc: tuple[np.ndarray, np.ndarray]
    pr: tuple[np.ndarray, np.ndarray]  # recall, precision
    pro: tuple[np.ndarray, np.ndarray] | None = None  # fpr, pro


@dataclass
class ImageMetrics:
    auroc: float
    ap: float
    f1max: float
    n_normal: int
    n_anomalous: int
    curves: Curves | None = field(default=None, repr=False)

    def as_percent(self) -> dict[str, float]:
        return {"image_auroc": 100 * self.auroc, "image_ap": 100 * self.ap, "image_f1max": 100 * self.f1max}


def image_metrics(scores: ArrayLike, labels: ArrayLike) -> ImageMetrics:
    """AUROC, AP and F1-max of image scores (exact). Raises :class:`UndefinedMetricError`."""
    rc = ranked_counts(scores, labels)
    need_both(rc, "image metrics")
    return ImageMetrics(
        auroc=auroc_from_counts(rc),
        ap=ap_from_counts(rc),
        f1max=f1max_from_counts(rc),
        n_normal=int(rc.n_neg),
        n_anomalous=int(rc.n_pos),
        curves=curves_of(rc),
    )


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    return auroc_from_counts(ranked_counts(scores, labels))


def average_precision(scores: ArrayLike, labels: ArrayLike) -> float:
    return ap_from_counts(ranked_counts(scores, labels))


def f1_max(scores: ArrayLike, labels: ArrayLike) -> float:
    return f1max_from_counts(ranked_counts(scores, labels))


def _downsample(x: np.ndarray, y: np.ndarray, n: int = _CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    if x.size <= n:
        return x.astype(np.float32), y.astype(np.float32)
    idx = np.unique(np.r_[np.linspace(0, x.size - 1, n).round().astype(int), x.size - 1])
    return x[idx].astype(np.float32), y[idx].astype(np.float32)


def curves_of(rc: RankedCounts, max_fpr: float | None = None) -> Curves:
    fpr, tpr = _roc_points(rc)
    recall, precision = _pr_points(rc)
    pro = None
    if rc.weight is not None and rc.regions > 0:
        pf, pp = _pro_points(rc)
        pro = _downsample(pf, pp)
    return Curves(roc=_downsample(fpr, tpr), pr=_downsample(recall, precision), pro=pro)


# --------------------------------------------------------------------------------------------
# Operating point: what a site needs to act on scores
# --------------------------------------------------------------------------------------------
@dataclass
class OperatingPoint:
    """A threshold chosen on evaluated images; an image is flagged when ``score > threshold``."""

    threshold: float
    target: Literal["specificity", "sensitivity"]
    target_value: float
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def sensitivity(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def specificity(self) -> float | None:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else None

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    def to_json(self) -> dict:
        return {
            "threshold": self.threshold,
            "rule": "anomalous if score > threshold",
            "target": self.target,
            "target_value": self.target_value,
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
            "precision": self.precision,
        }


def operating_point(
    scores: ArrayLike,
    labels: ArrayLike,
    specificity: float | None = None,
    sensitivity: float | None = None,
) -> OperatingPoint:
    """Lowest threshold reaching ``specificity`` on the normals (or highest reaching
    ``sensitivity`` on the anomalies), with the confusion counts it produces."""
    if (specificity is None) == (sensitivity is None):
        raise InputError("choose exactly one of specificity or sensitivity")
    s = as_numpy(scores).astype(np.float64).ravel()
    y = as_numpy(labels).ravel().astype(bool)
    if not np.isfinite(s).all():
        raise EvaluationError("non-finite image score(s): cannot choose a threshold")
    if specificity is not None:
        if not 0.0 < specificity < 1.0:
            raise InputError(f"specificity must be in (0, 1), got {specificity}")
        normals = np.sort(s[~y])
        if normals.size == 0:
            raise UndefinedMetricError("no normal images: a specificity operating point needs normals")
        k = math.ceil(specificity * normals.size - 1e-9)  # normals that must stay <= threshold
        threshold = float(normals[max(k, 1) - 1])
        target, value = "specificity", specificity
    else:
        assert sensitivity is not None
        if not 0.0 < sensitivity < 1.0:
            raise InputError(f"sensitivity must be in (0, 1), got {sensitivity}")
        anomalies = np.sort(s[y])[::-1]
        if anomalies.size == 0:
            raise UndefinedMetricError("no anomalous images: a sensitivity operating point needs anomalies")
        m = math.ceil(sensitivity * anomalies.size - 1e-9)
        threshold = float(np.nextafter(anomalies[max(m, 1) - 1], -np.inf))
        target, value = "sensitivity", sensitivity
    flagged = s > threshold
    return OperatingPoint(
        threshold=threshold,
        target=target,  # type: ignore[arg-type]
        target_value=value,
        tp=int((flagged & y).sum()),
        fp=int((flagged & ~y).sum()),
        tn=int((~flagged & ~y).sum()),
        fn=int((~flagged & y).sum()),
    )


# --------------------------------------------------------------------------------------------
def as_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def as_tensor(x: ArrayLike) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
