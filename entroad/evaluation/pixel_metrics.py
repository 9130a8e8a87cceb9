"""Streaming pixel metrics (exact or binned) and AUPRO over 8-connected ground-truth regions.

Definitions are in :mod:`entroad.evaluation.metrics`. :class:`PixelMetricAccumulator` keeps
either every pixel (exact) or three fixed-bin histograms over the score range (binned:
anomalous-pixel counts, normal-pixel counts, region weights). Binned values are the *exact* metrics of the scores quantised to the
bins; :class:`PixelMetrics.bound` gives a rigorous, data-dependent bound on the distance to
the exact values (see :func:`_binning_bounds`). ``mode="auto"`` stays exact until a pixel
budget is exceeded, then converts what it holds into histograms and continues binned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from scipy import ndimage

from entroad.errors import EvaluationError, InputError, UndefinedMetricError
from entroad.evaluation.metrics import (
    ANCHOR_AUPRO_KEY,
    DEFAULT_BINS,
    DEFAULT_EXACT_LIMIT,
    PIXEL_KEYS,
    RANGE_TOLERANCE,
    ArrayLike,
    Curves,
    RankedCounts,
    ap_from_counts,
    as_numpy,
    as_tensor,
    aupro_anomalyclip_from_counts,
    aupro_by_definition,
    auroc_from_counts,
    curves_of,
    f1max_from_counts,
    inverse_sizes,
    need_both,
    ranked_counts,
)

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


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
    aupro_definition: str = "official"  # which definition ``aupro`` follows
    aupro_anomalyclip: float | None = None  # AnomalyCLIP's definition, for METHOD §9
    curves: Curves | None = field(default=None, repr=False)

    def as_percent(self) -> dict[str, float]:
        return {
            "pixel_auroc": 100 * self.auroc,
            "pixel_ap": 100 * self.ap,
            "pixel_f1max": 100 * self.f1max,
            "pixel_aupro": 100 * self.aupro,
            ANCHOR_AUPRO_KEY: None if self.aupro_anomalyclip is None else 100 * self.aupro_anomalyclip,
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
    rc: RankedCounts,
    max_fpr: float = 0.3,
    exact: bool = True,
    bins: int | None = None,
    n_images: int = 0,
    aupro: str = "official",
) -> PixelMetrics:
    need_both(rc, "pixel metrics")
    if rc.regions == 0:
        raise UndefinedMetricError("pixel metrics: no annotated anomalous regions")
    f1 = f1max_from_counts(rc)
    bound = dict.fromkeys(PIXEL_KEYS, 0.0) if exact else _binning_bounds(rc, max_fpr, f1)
    value = aupro_by_definition(rc, max_fpr, aupro)
    try:
        anchor = value if aupro == "anomalyclip" else aupro_anomalyclip_from_counts(rc, max_fpr)
    except UndefinedMetricError:
        anchor = None  # e.g. < 2 thresholds below max_fpr: the §9 comparison shows "—"
    return PixelMetrics(
        auroc=auroc_from_counts(rc),
        ap=ap_from_counts(rc),
        f1max=f1,
        aupro=value,
        aupro_definition=aupro,
        aupro_anomalyclip=anchor,
        exact=exact,
        bins=None if exact else bins,
        bound=bound,
        n_normal_px=int(rc.n_neg),
        n_anomalous_px=int(rc.n_pos),
        n_regions=rc.regions,
        n_images=n_images,
        curves=curves_of(rc),
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
        m = as_tensor(maps).detach()
        if m.dim() == 2:
            m = m[None]
        g = as_numpy(masks) > 0.5
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
            wt += torch.bincount(idx[gm], weights=inverse_sizes(sizes.to(dev).ravel()[gm]), minlength=self.bins)

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

    def compute(self, max_fpr: float = 0.3, aupro: str = "official") -> PixelMetrics:
        """Pixel AUROC, AP, F1-max and AUPRO (``aupro``: official | anomalyclip); raises
        :class:`UndefinedMetricError` with a reason."""
        return pixel_metrics_from_counts(
            self.counts(), max_fpr, exact=not self._binned, bins=self.bins, n_images=self.images, aupro=aupro
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
    aupro: str = "official",
) -> PixelMetrics:
    """Pixel metrics of in-memory maps (N,H,W) and masks — convenience over the accumulator."""
    acc = PixelMetricAccumulator(mode=mode, bins=bins)
    acc.update(maps, masks)
    return acc.compute(max_fpr, aupro)


def aupro(maps: ArrayLike, masks: ArrayLike, max_fpr: float = 0.3, definition: str = "official") -> float:
    """Exact AUPRO of in-memory maps and masks; ``definition``: ``official`` (MVTec AD) or
    ``anomalyclip`` (AnomalyCLIP's ``cal_pro_score``, the one behind METHOD §9's numbers)."""
    return pixel_metrics(maps, masks, max_fpr, mode="exact", aupro=definition).aupro
