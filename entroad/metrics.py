"""Anomaly-detection metrics: exact image level, streaming pixel level (exact or binned).

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

All functions return fractions in [0, 1]; tables multiply by 100.

Streaming pixel metrics: :class:`PixelMetricAccumulator` keeps either every pixel (exact) or
three fixed-bin histograms over the score range (binned: anomalous-pixel counts, normal-pixel
counts, region weights). Binned values are the *exact* metrics of the scores quantised to the
bins; :class:`PixelMetrics.bound` gives a rigorous, data-dependent bound on the distance to
the exact values (see :func:`_binning_bounds`). ``mode="auto"`` stays exact until a pixel
budget is exceeded, then converts what it holds into histograms and continues binned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
import torch
from scipy import ndimage

from entroad.errors import EvaluationError, InputError, UndefinedMetricError

IMAGE_KEYS = ("image_auroc", "image_ap", "image_f1max")
PIXEL_KEYS = ("pixel_auroc", "pixel_ap", "pixel_f1max", "pixel_aupro")
METRIC_KEYS = IMAGE_KEYS + PIXEL_KEYS

DEFAULT_BINS = 1 << 16
DEFAULT_EXACT_LIMIT = 1 << 24  # pixels kept for exact mode before switching to bins
RANGE_TOLERANCE = 1e-4  # float round-off of smoothing/interpolation past [0, 1] is clamped
_CURVE_POINTS = 1000  # points kept for plotting
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)

ArrayLike = np.ndarray | torch.Tensor


# --------------------------------------------------------------------------------------------
# Ranked counts: the one representation every metric below is computed from.
# --------------------------------------------------------------------------------------------
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
    s = _as_numpy(scores).ravel()
    if s.dtype not in (np.float32, np.float64):
        s = s.astype(np.float64)
    y = _as_numpy(labels).ravel().astype(bool, copy=False)
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
        w = np.add.reduceat(_as_numpy(weights).astype(np.float64).ravel()[order], starts)
    elif region_sizes is not None:
        w = np.add.reduceat(_inverse(_as_numpy(region_sizes).ravel()[order]), starts)
    return RankedCounts(thresholds=s[starts].astype(np.float64), pos=pos, neg=sizes - pos, weight=w)


def _need_both(rc: RankedCounts, what: str) -> None:
    if rc.n_pos == 0:
        raise UndefinedMetricError(f"{what}: no anomalous samples")
    if rc.n_neg == 0:
        raise UndefinedMetricError(f"{what}: no normal samples")


def _roc_points(rc: RankedCounts) -> tuple[np.ndarray, np.ndarray]:
    tps, fps = rc.tps, rc.fps
    return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


def auroc_from_counts(rc: RankedCounts) -> float:
    _need_both(rc, "AUROC")
    fpr, tpr = _roc_points(rc)
    return float(np.trapezoid(tpr, fpr))


def _pr_points(rc: RankedCounts) -> tuple[np.ndarray, np.ndarray]:
    keep = (rc.pos + rc.neg) > 0  # empty bins are not thresholds
    tps, fps = rc.tps[keep], rc.fps[keep]
    return tps / rc.n_pos, tps / (tps + fps)


def ap_from_counts(rc: RankedCounts) -> float:
    _need_both(rc, "AP")
    recall, precision = _pr_points(rc)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def f1max_from_counts(rc: RankedCounts) -> float:
    _need_both(rc, "F1-max")
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


def aupro_from_counts(rc: RankedCounts, max_fpr: float = 0.3) -> float:
    if rc.weight is None:
        raise InputError("AUPRO needs region weights (pixel-level counts)")
    if rc.regions == 0 or rc.n_pos == 0:
        raise UndefinedMetricError("AUPRO: no annotated anomalous regions")
    if rc.n_neg == 0:
        raise UndefinedMetricError("AUPRO: no normal pixels")
    if not 0.0 < max_fpr <= 1.0:
        raise InputError(f"max_fpr must be in (0, 1], got {max_fpr}")
    fpr, pro = _pro_points(rc)
    return float(area_to(fpr, pro, max_fpr) / max_fpr)


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
    _need_both(rc, "image metrics")
    return ImageMetrics(
        auroc=auroc_from_counts(rc),
        ap=ap_from_counts(rc),
        f1max=f1max_from_counts(rc),
        n_normal=int(rc.n_neg),
        n_anomalous=int(rc.n_pos),
        curves=_curves(rc),
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


def _curves(rc: RankedCounts, max_fpr: float | None = None) -> Curves:
    fpr, tpr = _roc_points(rc)
    recall, precision = _pr_points(rc)
    pro = None
    if rc.weight is not None and rc.regions > 0:
        pf, pp = _pro_points(rc)
        pro = _downsample(pf, pp)
    return Curves(roc=_downsample(fpr, tpr), pr=_downsample(recall, precision), pro=pro)


# --------------------------------------------------------------------------------------------
# Pixel level (streaming)
# --------------------------------------------------------------------------------------------
def region_sizes(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Per-pixel size of its 8-connected ground-truth region (0 outside), and the region count.

    A pixel's AUPRO weight is ``1/size``; sizes (int32) are stored instead of weights so that
    exact mode sums ``1/|R|`` in float64 without keeping float64 per pixel.
    """
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.int32), 0
    labelled, n = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return sizes[labelled].astype(np.int32), int(n)


def _inverse(sizes: np.ndarray | torch.Tensor):
    """``1/size`` for region pixels, 0 elsewhere (float64)."""
    if isinstance(sizes, torch.Tensor):
        s = sizes.double()
        return torch.where(s > 0, 1.0 / s.clamp(min=1), torch.zeros_like(s))
    s = sizes.astype(np.float64)
    return np.where(s > 0, 1.0 / np.maximum(s, 1), 0.0)


@dataclass
class PixelMetrics:
    auroc: float
    ap: float
    f1max: float
    aupro: float
    exact: bool
    bins: int | None  # None when exact
    # Bound on |binned - exact| per key, as fractions (0 when exact). For F1-max the exact
    # value lies in [binned, binned + bound].
    bound: dict[str, float]
    n_normal_px: int
    n_anomalous_px: int
    n_regions: int
    n_images: int
    curves: Curves | None = field(default=None, repr=False)

    def as_percent(self) -> dict[str, float]:
        return {
            "pixel_auroc": 100 * self.auroc,
            "pixel_ap": 100 * self.ap,
            "pixel_f1max": 100 * self.f1max,
            "pixel_aupro": 100 * self.aupro,
        }


def _binning_bounds(rc: RankedCounts, max_fpr: float, f1_binned: float) -> dict[str, float]:
    """Rigorous bounds on |metric(raw scores) − metric(binned scores)|.

    Only pairs/pixels that share a bin can be ordered differently. With ``T, F`` the anomalous
    and normal counts above bin b and ``p, n`` the counts inside it:

    * AUROC: a pair inside one bin scores 1/2 instead of 0 or 1 → ``Σ p n / (2 P N)``.
    * AP: within the bin every precision lies in ``[(T+1)/(T+1+F+n), (T+p)/(T+p+F)]`` and the
      bin's recall mass is ``p/P`` → ``Σ p/P · (upper − lower)``.
    * F1-max: bin edges are attainable thresholds, so exact ≥ binned; inside a bin
      ``F1 ≤ 2(T+p)/(T+p+F+P)`` → ``max_b upper − binned``.
    * AUPRO: inside a bin the monotone curve stays in the box ``ΔFPR × ΔPRO``; the trapezoid
      is off by at most half the box (a whole box for the bin cut at ``max_fpr``), ÷ max_fpr.
    """
    P, N = rc.n_pos, rc.n_neg
    p, n = rc.pos.astype(np.float64), rc.neg.astype(np.float64)
    T = np.cumsum(p) - p
    F = np.cumsum(n) - n
    b_auc = float(np.sum(p * n) / (2.0 * P * N))
    has_pos = p > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        upper = (T + p) / (T + p + F)
        lower = (T + 1) / (T + 1 + F + n)
    b_ap = float(np.sum(np.where(has_pos, p / P * (upper - lower), 0.0)))
    f1_upper = float(np.max(2.0 * (T + p) / (T + p + F + P)))
    b_f1 = max(0.0, f1_upper - f1_binned)
    b_pro = 0.0
    if rc.weight is not None and rc.regions > 0:
        f_hi = np.cumsum(n) / N
        f_lo = f_hi - n / N
        d_pro = rc.weight / rc.regions
        inside = f_hi <= max_fpr
        b_pro = float(np.sum(0.5 * (f_hi - f_lo)[inside] * d_pro[inside]))
        cut = np.flatnonzero((f_lo < max_fpr) & (f_hi > max_fpr))
        if cut.size:
            i = cut[0]
            b_pro += float((max_fpr - f_lo[i]) * d_pro[i])
        b_pro /= max_fpr
    return {"pixel_auroc": b_auc, "pixel_ap": b_ap, "pixel_f1max": b_f1, "pixel_aupro": b_pro}


def pixel_metrics_from_counts(
    rc: RankedCounts, max_fpr: float = 0.3, exact: bool = True, bins: int | None = None, n_images: int = 0
) -> PixelMetrics:
    _need_both(rc, "pixel metrics")
    if rc.regions == 0:
        raise UndefinedMetricError("pixel metrics: no annotated anomalous regions")
    f1 = f1max_from_counts(rc)
    bound = dict.fromkeys(PIXEL_KEYS, 0.0) if exact else _binning_bounds(rc, max_fpr, f1)
    return PixelMetrics(
        auroc=auroc_from_counts(rc),
        ap=ap_from_counts(rc),
        f1max=f1,
        aupro=aupro_from_counts(rc, max_fpr),
        exact=exact,
        bins=None if exact else bins,
        bound=bound,
        n_normal_px=int(rc.n_neg),
        n_anomalous_px=int(rc.n_pos),
        n_regions=rc.regions,
        n_images=n_images,
        curves=_curves(rc),
    )


class PixelMetricAccumulator:
    """Streams (anomaly map, ground-truth mask) batches into bounded memory.

    ``mode``: ``"exact"`` keeps every pixel (9 bytes each: small data, verification);
    ``"binned"`` keeps three histograms of ``bins`` bins over ``value_range`` (anomalous
    counts, normal counts, AUPRO region weights); ``"auto"`` is exact until ``exact_limit``
    pixels, then converts what it holds and continues binned. Map values outside
    ``value_range`` by more than :data:`RANGE_TOLERANCE` are an error (they would silently land
    in the edge bins); smaller overshoots (interpolation round-off) are clamped. Histograms
    live on the maps' device, so a GPU evaluation bins on the GPU.
    """

    def __init__(
        self,
        mode: Literal["auto", "exact", "binned"] = "auto",
        bins: int = DEFAULT_BINS,
        exact_limit: int = DEFAULT_EXACT_LIMIT,
        value_range: tuple[float, float] = (0.0, 1.0),
    ):
        if mode not in ("auto", "exact", "binned"):
            raise InputError(f"pixel metric mode must be auto|exact|binned, got {mode!r}")
        if bins < 2:
            raise InputError(f"bins must be >= 2, got {bins}")
        lo, hi = map(float, value_range)
        if not hi > lo:
            raise InputError(f"value_range must be increasing, got {value_range}")
        self.bins = int(bins)
        self.lo, self.hi = lo, hi
        self.exact_limit = int(exact_limit)
        self._binned = mode == "binned"
        self._fixed_exact = mode == "exact"
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # scores, gt, region sizes
        self._stored = 0
        self._hist: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # pos, neg, weight
        self.regions = 0
        self.images = 0

    @property
    def exact(self) -> bool:
        return not self._binned

    def update(self, maps: ArrayLike, masks: ArrayLike, what: str = "anomaly map") -> None:
        """Add ``maps`` (B,H,W or H,W scores, any device) with binary ``masks`` of the same shape."""
        m = _as_tensor(maps).detach()
        if m.dim() == 2:
            m = m[None]
        g = _as_numpy(masks) > 0.5
        if g.ndim == 2:
            g = g[None]
        if tuple(m.shape) != g.shape:
            raise InputError(f"{what}: map shape {tuple(m.shape)} differs from mask shape {g.shape}")
        m = m.float()
        lo_t, hi_t = torch.aminmax(m)
        lo_v, hi_v = float(lo_t), float(hi_t)
        if not (math.isfinite(lo_v) and math.isfinite(hi_v)):
            bad = int((~torch.isfinite(m)).sum())
            raise EvaluationError(f"{what}: {bad} non-finite value(s) (NaN/inf); the model output is invalid")
        tol = RANGE_TOLERANCE * (self.hi - self.lo)
        if lo_v < self.lo - tol or hi_v > self.hi + tol:
            raise EvaluationError(
                f"{what}: values [{lo_v:.4g}, {hi_v:.4g}] fall outside the expected range "
                f"[{self.lo:g}, {self.hi:g}]; anomaly maps must be probabilities"
            )
        if lo_v < self.lo or hi_v > self.hi:  # round-off overshoot only (checked above)
            m = m.clamp(self.lo, self.hi)
        sizes = np.zeros(g.shape, dtype=np.int32)
        for i in range(g.shape[0]):
            sizes[i], k = region_sizes(g[i])
            self.regions += k
        self.images += g.shape[0]
        if self._binned:
            self._add_to_hist(m, torch.from_numpy(g), torch.from_numpy(sizes))
        else:
            self._chunks.append((m.cpu().numpy().ravel(), g.ravel(), sizes.ravel()))
            self._stored += g.size
            if not self._fixed_exact and self._stored > self.exact_limit:
                self._switch_to_bins(m.device)

    def _add_to_hist(self, m: torch.Tensor, g: torch.Tensor, sizes: torch.Tensor) -> None:
        if self._hist is None:
            dev = m.device
            self._hist = (
                torch.zeros(self.bins, dtype=torch.int64, device=dev),
                torch.zeros(self.bins, dtype=torch.int64, device=dev),
                torch.zeros(self.bins, dtype=torch.float64, device=dev),
            )
        pos, neg, wt = self._hist
        dev = pos.device
        idx = ((m.to(dev) - self.lo) * (self.bins / (self.hi - self.lo))).long().clamp_(0, self.bins - 1).ravel()
        gm = g.to(dev).ravel()
        # One bincount gives both label counts: index 2*bin + label.
        both = torch.bincount(idx * 2 + gm.long(), minlength=2 * self.bins).view(self.bins, 2)
        neg += both[:, 0]
        pos += both[:, 1]
        if bool(gm.any()):
            wt += torch.bincount(idx[gm], weights=_inverse(sizes.to(dev).ravel()[gm]), minlength=self.bins)

    def _switch_to_bins(self, device: torch.device | str = "cpu") -> None:
        chunks, self._chunks, self._stored = self._chunks, [], 0
        self._binned = True
        for s, g, sz in chunks:
            self._add_to_hist(torch.from_numpy(s).to(device), torch.from_numpy(g), torch.from_numpy(sz))

    def counts(self) -> RankedCounts:
        """Ranked counts of everything accumulated (bins or distinct values, descending)."""
        if self._binned:
            if self._hist is None:
                raise UndefinedMetricError("no pixels were accumulated")
            pos, neg, wt = (t.cpu().numpy()[::-1].copy() for t in self._hist)
            edges = self.lo + (self.hi - self.lo) * np.arange(self.bins)[::-1] / self.bins
            return RankedCounts(thresholds=edges, pos=pos, neg=neg, weight=wt, regions=self.regions)
        if not self._chunks:
            raise UndefinedMetricError("no pixels were accumulated")
        s = np.concatenate([c[0] for c in self._chunks])
        g = np.concatenate([c[1] for c in self._chunks])
        sizes = np.concatenate([c[2] for c in self._chunks])
        rc = ranked_counts(s, g, region_sizes=sizes)
        return RankedCounts(rc.thresholds, rc.pos, rc.neg, rc.weight, regions=self.regions)

    def compute(self, max_fpr: float = 0.3) -> PixelMetrics:
        """Pixel AUROC, AP, F1-max and AUPRO; raises :class:`UndefinedMetricError` with a reason."""
        return pixel_metrics_from_counts(
            self.counts(), max_fpr, exact=not self._binned, bins=self.bins, n_images=self.images
        )

    def merge(self, other: PixelMetricAccumulator) -> None:
        """Add another accumulator's pixels (same bins and range), e.g. to pool classes."""
        if (other.bins, other.lo, other.hi) != (self.bins, self.lo, self.hi):
            raise InputError("cannot merge pixel accumulators with different bins or ranges")
        self.regions += other.regions
        self.images += other.images
        if other._binned and not self._binned:
            self._switch_to_bins(other._hist[0].device if other._hist is not None else "cpu")
        if not self._binned:
            self._chunks.extend(other._chunks)
            self._stored += other._stored
            if not self._fixed_exact and self._stored > self.exact_limit:
                self._switch_to_bins()
            return
        if other._binned:
            if other._hist is None:
                return
            if self._hist is None:
                self._hist = tuple(t.clone() for t in other._hist)  # type: ignore[assignment]
            else:
                for a, b in zip(self._hist, other._hist, strict=True):
                    a += b.to(a.device)
        else:
            for s, g, sz in other._chunks:
                self._add_to_hist(torch.from_numpy(s), torch.from_numpy(g), torch.from_numpy(sz))


def pixel_metrics(
    maps: ArrayLike, masks: ArrayLike, max_fpr: float = 0.3, mode: Literal["exact", "binned"] = "exact",
    bins: int = DEFAULT_BINS,
) -> PixelMetrics:
    """Pixel metrics of in-memory maps (N,H,W) and masks — convenience over the accumulator."""
    acc = PixelMetricAccumulator(mode=mode, bins=bins)
    acc.update(maps, masks)
    return acc.compute(max_fpr)


def aupro(maps: ArrayLike, masks: ArrayLike, max_fpr: float = 0.3) -> float:
    """Exact AUPRO of in-memory maps and masks."""
    return pixel_metrics(maps, masks, max_fpr, mode="exact").aupro


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
    s = _as_numpy(scores).astype(np.float64).ravel()
    y = _as_numpy(labels).ravel().astype(bool)
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
def _as_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _as_tensor(x: ArrayLike) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
