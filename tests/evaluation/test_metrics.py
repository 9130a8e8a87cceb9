"""Metrics against independent references.

References: scikit-learn for AUROC / AP / F1 (via its PR curve); a brute-force AUPRO written
here (own flood-fill connected components, one full pass over the pixels per threshold, own
integration). Tolerances: exact mode 1e-9 absolute (float64 round-off of sums over <= 1e5
terms); binned mode must lie within the bound it reports (+1e-12).
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from entroad.errors import EvaluationError, UndefinedMetricError
from entroad.evaluation import metrics as M
from entroad.evaluation import pixel_metrics as PM

EXACT_TOL = 1e-9


# ------------------------------------------------------------------ independent references
def sk_f1max(y, s) -> float:
    p, r, _ = precision_recall_curve(y, s)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    return float(f1.max())


def flood_fill_regions(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """8-connected components by BFS (independent of scipy)."""
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    regions = []
    for i in range(h):
        for j in range(w):
            if mask[i, j] and not seen[i, j]:
                comp, q = [], deque([(i, j)])
                seen[i, j] = True
                while q:
                    a, b = q.popleft()
                    comp.append((a, b))
                    for da in (-1, 0, 1):
                        for db in (-1, 0, 1):
                            x, y = a + da, b + db
                            if 0 <= x < h and 0 <= y < w and mask[x, y] and not seen[x, y]:
                                seen[x, y] = True
                                q.append((x, y))
                regions.append(comp)
    return regions


def brute_aupro(maps: np.ndarray, masks: np.ndarray, max_fpr: float = 0.3) -> float:
    maps = maps.astype(np.float64)
    regions = [(k, r) for k in range(len(masks)) for r in flood_fill_regions(masks[k].astype(bool))]
    region_scores = [np.array([maps[k][a, b] for a, b in r]) for k, r in regions]
    normal = maps[~masks.astype(bool)]
    pts = [(0.0, 0.0)]
    for t in np.unique(maps)[::-1]:  # every distinct threshold, high to low
        fpr = float(np.mean(normal >= t))
        pro = float(np.mean([np.mean(rs >= t) for rs in region_scores]))
        pts.append((fpr, pro))
    pts.append((1.0, 1.0))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:], strict=True):
        if x0 >= max_fpr:
            break
        if x1 > max_fpr:
            y1 = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
            x1 = max_fpr
        area += (x1 - x0) * (y0 + y1) / 2
    return area / max_fpr


def random_masks(rng, n, h, w, p_image=0.6) -> np.ndarray:
    masks = np.zeros((n, h, w), dtype=bool)
    for k in range(n):
        if rng.random() < p_image:
            for _ in range(rng.integers(1, 4)):
                r0, c0 = rng.integers(0, h - 2), rng.integers(0, w - 2)
                masks[k, r0 : r0 + rng.integers(1, h // 2), c0 : c0 + rng.integers(1, w // 2)] = True
    return masks


def correlated_maps(rng, masks, noise=0.6, decimals=None) -> np.ndarray:
    maps = np.clip(0.3 * masks + noise * rng.random(masks.shape), 0, 1).astype(np.float32)
    return maps.round(decimals) if decimals is not None else maps


# ------------------------------------------------------------------ image level
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decimals", [None, 1, 2])  # None: continuous; 1-2: heavy ties
def test_image_metrics_match_sklearn(seed, decimals):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    y = rng.random(n) < rng.uniform(0.1, 0.9)
    y[0], y[1] = True, False
    s = rng.normal(size=n) + y * rng.uniform(0, 2)
    if decimals is not None:
        s = s.round(decimals)
    m = M.image_metrics(s, y)
    assert abs(m.auroc - roc_auc_score(y, s)) < EXACT_TOL
    assert abs(m.ap - average_precision_score(y, s)) < EXACT_TOL
    assert abs(m.f1max - sk_f1max(y, s)) < EXACT_TOL
    assert m.n_normal == int((~y).sum()) and m.n_anomalous == int(y.sum())


def test_image_metrics_constant_and_perfect_scores():
    y = np.array([0, 0, 1, 1, 1])
    const = M.image_metrics(np.full(5, 0.7), y)
    assert const.auroc == pytest.approx(0.5, abs=EXACT_TOL)
    assert const.ap == pytest.approx(average_precision_score(y, np.full(5, 0.7)), abs=EXACT_TOL)
    perfect = M.image_metrics(np.array([0.1, 0.2, 0.8, 0.9, 0.95]), y)
    assert (perfect.auroc, perfect.ap, perfect.f1max) == (1.0, 1.0, 1.0)
    inverted = M.image_metrics(-np.array([0.1, 0.2, 0.8, 0.9, 0.95]), y)
    assert inverted.auroc == 0.0


def test_single_label_is_undefined_with_reason():
    with pytest.raises(UndefinedMetricError, match="no normal"):
        M.image_metrics([0.1, 0.5], [1, 1])
    with pytest.raises(UndefinedMetricError, match="no anomalous"):
        M.image_metrics([0.1, 0.5], [0, 0])


def test_nan_score_is_an_error():
    with pytest.raises(EvaluationError, match="non-finite"):
        M.image_metrics([0.1, float("nan"), 0.3], [0, 1, 1])


# ------------------------------------------------------------------ pixel level, exact
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("decimals", [None, 2])
def test_pixel_exact_matches_references(seed, decimals):
    rng = np.random.default_rng(100 + seed)
    masks = random_masks(rng, 6, 20, 24)
    masks[0, 5:9, 5:9] = True  # at least one region
    maps = correlated_maps(rng, masks, decimals=decimals)
    pm = PM.pixel_metrics(maps, masks, max_fpr=0.3, mode="exact")
    y, s = masks.ravel(), maps.ravel().astype(np.float64)
    assert pm.exact and pm.bound == dict.fromkeys(M.PIXEL_KEYS, 0.0)
    assert abs(pm.auroc - roc_auc_score(y, s)) < EXACT_TOL
    assert abs(pm.ap - average_precision_score(y, s)) < EXACT_TOL
    assert abs(pm.f1max - sk_f1max(y, s)) < EXACT_TOL
    assert abs(pm.aupro - brute_aupro(maps, masks, 0.3)) < EXACT_TOL
    assert pm.n_regions == sum(len(flood_fill_regions(m)) for m in masks)


@pytest.mark.parametrize("max_fpr", [0.05, 0.3, 1.0])
def test_aupro_integration_limits(max_fpr):
    rng = np.random.default_rng(7)
    masks = random_masks(rng, 4, 16, 16, p_image=1.0)
    maps = correlated_maps(rng, masks, decimals=2)
    assert abs(PM.aupro(maps, masks, max_fpr) - brute_aupro(maps, masks, max_fpr)) < EXACT_TOL


def test_aupro_adversarial_cases():
    rng = np.random.default_rng(3)
    # Single-pixel regions (diagonal neighbours are one 8-connected region, not two).
    masks = np.zeros((3, 12, 12), dtype=bool)
    masks[0, 2, 2] = masks[0, 9, 9] = True
    masks[1, 4, 4] = masks[1, 5, 5] = True  # diagonal: one region
    maps = rng.random(masks.shape).astype(np.float32)
    pm = PM.pixel_metrics(maps, masks)
    assert pm.n_regions == 3
    assert abs(pm.aupro - brute_aupro(maps, masks)) < EXACT_TOL
    # Constant maps: the curve is the diagonal -> area 0.3^2/2 / 0.3 = 0.15; AUROC 1/2.
    const = PM.pixel_metrics(np.full(masks.shape, 0.4, np.float32), masks)
    assert const.aupro == pytest.approx(0.15, abs=EXACT_TOL)
    assert const.auroc == pytest.approx(0.5, abs=EXACT_TOL)
    # A perfect map: every region fully detected before any false positive.
    perfect = PM.pixel_metrics(masks.astype(np.float32), masks)
    assert perfect.aupro == pytest.approx(1.0, abs=EXACT_TOL) and perfect.auroc == 1.0


def test_region_size_weighting_matters():
    """A big region found and a small one missed is 0.5 PRO, not the pixel share."""
    masks = np.zeros((1, 10, 10), dtype=bool)
    masks[0, :, :5] = True  # 50 px
    masks[0, 9, 9] = True  # 1 px, isolated
    maps = np.zeros((1, 10, 10), np.float32)
    maps[0, :, :5] = 1.0
    pm = PM.pixel_metrics(maps, masks)
    # At FPR 0 the PRO is 0.5 (one of two regions); it rises linearly to 1 at FPR 1.
    assert abs(pm.aupro - brute_aupro(maps, masks)) < EXACT_TOL
    assert 0.5 < pm.aupro < 0.6


def test_all_normal_class_is_undefined():
    acc = PM.PixelMetricAccumulator()
    acc.update(np.random.default_rng(0).random((2, 8, 8)), np.zeros((2, 8, 8)))
    with pytest.raises(UndefinedMetricError, match="no anomalous"):
        acc.compute()


def test_map_validation():
    acc = PM.PixelMetricAccumulator()
    mask = np.zeros((1, 4, 4))
    bad = np.zeros((1, 4, 4), np.float32)
    bad[0, 1, 1] = np.nan
    with pytest.raises(EvaluationError, match="non-finite"):
        acc.update(bad, mask)
    with pytest.raises(EvaluationError, match="outside the expected range"):
        acc.update(np.full((1, 4, 4), 1.5, np.float32), mask)
    with pytest.raises(Exception, match="differs from mask shape"):
        acc.update(np.zeros((1, 4, 5), np.float32), mask)
    # Round-off overshoot is clamped, not an error.
    acc.update(np.full((1, 4, 4), 1.0 + 1e-6, np.float32), mask)


# ------------------------------------------------------------------ pixel level, binned
@pytest.mark.parametrize("bins", [64, 1024, M.DEFAULT_BINS])
@pytest.mark.parametrize("seed", range(3))
def test_binned_within_reported_bound(bins, seed):
    rng = np.random.default_rng(200 + seed)
    masks = random_masks(rng, 8, 24, 24)
    masks[0, 2:6, 2:6] = True
    maps = correlated_maps(rng, masks)
    exact = PM.pixel_metrics(maps, masks, mode="exact")
    binned = PM.pixel_metrics(maps, masks, mode="binned", bins=bins)
    assert not binned.exact and binned.bins == bins
    for key, e, b in [
        ("pixel_auroc", exact.auroc, binned.auroc),
        ("pixel_ap", exact.ap, binned.ap),
        ("pixel_aupro", exact.aupro, binned.aupro),
    ]:
        assert abs(e - b) <= binned.bound[key] + 1e-12, key
    # F1-max: bin edges are attainable thresholds, so the exact value is one-sided.
    assert binned.f1max - 1e-12 <= exact.f1max <= binned.f1max + binned.bound["pixel_f1max"] + 1e-12
    if bins == M.DEFAULT_BINS:  # the default is tight enough to report 2 decimals in percent
        assert max(binned.bound.values()) < 5e-4


def test_binned_equals_exact_on_quantised_scores():
    """Binned metrics are the exact metrics of the scores snapped to their bins."""
    rng = np.random.default_rng(11)
    bins = 128
    masks = random_masks(rng, 6, 20, 20)
    masks[1, 3:7, 3:7] = True
    maps = correlated_maps(rng, masks)
    snapped = ((np.floor(maps * bins).clip(0, bins - 1) + 0.5) / bins).astype(np.float32)
    a = PM.pixel_metrics(maps, masks, mode="binned", bins=bins)
    b = PM.pixel_metrics(snapped, masks, mode="exact")
    for k in ("auroc", "ap", "f1max", "aupro"):
        assert abs(getattr(a, k) - getattr(b, k)) < EXACT_TOL, k


def test_streaming_equals_one_shot_and_auto_switches():
    rng = np.random.default_rng(5)
    masks = random_masks(rng, 10, 16, 16)
    masks[0, 1:4, 1:4] = True
    maps = correlated_maps(rng, masks)
    one = PM.pixel_metrics(maps, masks, mode="binned", bins=512)
    auto = PM.PixelMetricAccumulator(mode="auto", bins=512, exact_limit=3 * 256)
    for k in range(0, 10, 2):
        auto.update(torch.from_numpy(maps[k : k + 2]), masks[k : k + 2])
    assert not auto.exact  # switched to bins after the pixel budget
    streamed = auto.compute()
    for k in ("auroc", "ap", "f1max", "aupro"):
        assert abs(getattr(one, k) - getattr(streamed, k)) < EXACT_TOL, k
    small = PM.PixelMetricAccumulator(mode="auto", exact_limit=10**9)
    small.update(maps, masks)
    assert small.exact


def test_merge_pools_classes():
    rng = np.random.default_rng(9)
    masks = random_masks(rng, 6, 16, 16, p_image=1.0)
    maps = correlated_maps(rng, masks)
    for mode in ("exact", "binned"):
        a, b = PM.PixelMetricAccumulator(mode=mode), PM.PixelMetricAccumulator(mode=mode)
        a.update(maps[:3], masks[:3])
        b.update(maps[3:], masks[3:])
        a.merge(b)
        ref = PM.pixel_metrics(maps, masks, mode=mode)
        assert abs(a.compute().aupro - ref.aupro) < EXACT_TOL
        assert a.regions == ref.n_regions


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_binned_on_gpu_matches_cpu():
    rng = np.random.default_rng(1)
    masks = random_masks(rng, 6, 32, 32, p_image=1.0)
    maps = correlated_maps(rng, masks)
    cpu = PM.pixel_metrics(maps, masks, mode="binned")
    gpu = PM.pixel_metrics(torch.from_numpy(maps).cuda(), masks, mode="binned")
    for k in ("auroc", "ap", "f1max", "aupro"):
        assert abs(getattr(cpu, k) - getattr(gpu, k)) < 1e-9, k


# ------------------------------------------------------------------ operating point
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("target", [0.5, 0.9, 0.95, 0.99])
def test_operating_point_specificity_is_reached_and_tight(seed, target):
    rng = np.random.default_rng(seed)
    s = rng.random(60).round(2)  # ties
    y = rng.random(60) < 0.4
    op = M.operating_point(s, y, specificity=target)
    normals = s[~y]
    spec = np.mean(normals <= op.threshold)
    assert spec >= target - 1e-12
    # Lowest such threshold among the normal scores: one step lower misses the target.
    lower = normals[normals < op.threshold]
    if lower.size:
        assert np.mean(normals <= lower.max()) < target
    assert op.tp + op.fn == y.sum() and op.tn + op.fp == (~y).sum()
    assert op.tp == int(((s > op.threshold) & y).sum())


@pytest.mark.parametrize("target", [0.5, 0.9, 1 - 1e-6])
def test_operating_point_sensitivity(target):
    rng = np.random.default_rng(4)
    s, y = rng.random(40), rng.random(40) < 0.5
    op = M.operating_point(s, y, sensitivity=target)
    assert op.sensitivity >= target
    assert np.mean(s[y] > np.nextafter(op.threshold, np.inf)) < target or op.sensitivity == 1.0


def test_operating_point_needs_normals():
    with pytest.raises(UndefinedMetricError, match="no normal images"):
        M.operating_point([0.2, 0.4], [1, 1], specificity=0.9)


# ------------------------------------------------------------------ more adversarial cases
def test_aupro_when_a_curve_point_lands_exactly_on_the_fpr_limit():
    """10 normal pixels with distinct scores: FPR steps of 0.1 hit 0.3 exactly."""
    maps = np.zeros((1, 4, 4), np.float32)
    masks = np.zeros((1, 4, 4), bool)
    masks[0, 0, :] = True  # 4 px region
    masks[0, 3, 3] = masks[0, 2, 0] = True  # two single-pixel regions
    normal = ~masks[0]
    assert normal.sum() == 10
    maps[0][normal] = np.linspace(0.05, 0.95, 10)
    maps[0][masks[0]] = [0.9, 0.5, 0.2, 0.97, 0.31, 0.72]
    for limit in (0.1, 0.3, 0.35, 1.0):
        assert abs(PM.aupro(maps, masks, limit) - brute_aupro(maps, masks, limit)) < EXACT_TOL, limit


def test_every_anomalous_pixel_tied_with_normals():
    """Ties across labels: every anomalous score also occurs among the normal pixels."""
    rng = np.random.default_rng(21)
    masks = random_masks(rng, 5, 12, 12, p_image=1.0)
    maps = rng.choice(np.array([0.1, 0.4, 0.7], np.float32), size=masks.shape)
    pm = PM.pixel_metrics(maps, masks)
    y, s = masks.ravel(), maps.ravel().astype(np.float64)
    assert abs(pm.auroc - roc_auc_score(y, s)) < EXACT_TOL
    assert abs(pm.ap - average_precision_score(y, s)) < EXACT_TOL
    assert abs(pm.f1max - sk_f1max(y, s)) < EXACT_TOL
    assert abs(pm.aupro - brute_aupro(maps, masks)) < EXACT_TOL


def test_constant_maps_binned_stay_within_bound():
    masks = np.zeros((3, 10, 10), bool)
    masks[0, 2:5, 2:5] = True
    maps = np.full(masks.shape, 0.5, np.float32)
    exact = PM.pixel_metrics(maps, masks, mode="exact")
    binned = PM.pixel_metrics(maps, masks, mode="binned", bins=256)
    for k in ("auroc", "ap", "aupro"):
        assert abs(getattr(exact, k) - getattr(binned, k)) <= binned.bound[f"pixel_{k}"] + 1e-12
    assert exact.auroc == pytest.approx(0.5, abs=EXACT_TOL)
    assert exact.ap == pytest.approx(masks.mean(), abs=EXACT_TOL)  # precision at the one threshold


def test_maps_at_range_edges_land_in_the_edge_bins():
    """Scores of exactly 0 and 1 (saturated maps) are counted, not dropped."""
    masks = np.zeros((2, 6, 6), bool)
    masks[0, :3, :3] = True
    maps = masks.astype(np.float32)  # 1 inside, 0 outside
    binned = PM.pixel_metrics(maps, masks, mode="binned", bins=256)
    assert binned.n_anomalous_px == 9 and binned.n_normal_px == 63
    assert binned.auroc == 1.0 and binned.aupro == pytest.approx(1.0)


def test_exact_mode_memory_is_bounded_by_the_pixel_limit():
    """Auto mode never keeps more than ``exact_limit`` pixels once it has switched."""
    rng = np.random.default_rng(2)
    acc = PM.PixelMetricAccumulator(mode="auto", bins=1024, exact_limit=1000)
    for _ in range(20):
        masks = random_masks(rng, 2, 16, 16)
        acc.update(correlated_maps(rng, masks), masks)
        assert acc._stored <= 1000 + 2 * 16 * 16
    assert not acc.exact and acc._stored == 0
    assert sum(t.numel() for t in acc._hist) == 3 * 1024  # O(bins), independent of the data size
