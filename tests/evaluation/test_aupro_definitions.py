"""Both AUPRO definitions: AnomalyCLIP's (behind METHOD §9's reference numbers) against a
plain copy of its ``cal_pro_score``, and the official one (MVTec AD) beside it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import auc

from entroad.metrics import aupro


def cal_pro_score(masks, amaps, max_step=200, expect_fpr=0.3):
    """AnomalyCLIP's metric, copied plainly (skimage's measure.label on a 2-D mask is
    scipy's label with 8-connectivity)."""
    binary_amaps = np.zeros_like(amaps, dtype=bool)
    min_th, max_th = amaps.min(), amaps.max()
    delta = (max_th - min_th) / max_step
    pros, fprs = [], []
    for th in np.arange(min_th, max_th, delta):
        binary_amaps[amaps <= th], binary_amaps[amaps > th] = 0, 1
        pro = []
        for binary_amap, mask in zip(binary_amaps, masks, strict=True):
            labelled, n = ndimage.label(mask, structure=np.ones((3, 3)))
            for r in range(1, n + 1):
                region = labelled == r
                pro.append(binary_amap[region].sum() / region.sum())
        inverse_masks = 1 - masks
        fp_pixels = np.logical_and(inverse_masks, binary_amaps).sum()
        fprs.append(fp_pixels / inverse_masks.sum())
        pros.append(np.array(pro).mean())
    pros, fprs = np.array(pros), np.array(fprs)
    idxes = fprs < expect_fpr
    fprs = fprs[idxes]
    fprs = (fprs - fprs.min()) / (fprs.max() - fprs.min())
    return auc(fprs, pros[idxes])


def sample(seed: int, n: int = 4, size: int = 24):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    for i in range(n - 1):  # the last image is normal
        for _ in range(rng.integers(1, 3)):
            y, x, h, w = rng.integers(0, size - 6, 2).tolist() + rng.integers(2, 6, 2).tolist()
            masks[i, y : y + h, x : x + w] = 1
    masks[0, 20, 20] = masks[0, 21, 21] = 1  # diagonal neighbours: one 8-connected region
    maps = (rng.random(masks.shape) * 0.6 + masks * rng.random(masks.shape) * 0.4).astype(np.float32)
    return maps, masks


@pytest.mark.parametrize("seed", range(4))
def test_anomalyclip_definition_matches_cal_pro_score(seed):
    maps, masks = sample(seed)
    ours = aupro(maps, masks, max_fpr=0.3, definition="anomalyclip")
    assert ours == pytest.approx(cal_pro_score(masks, maps), abs=1e-9)


def test_definitions_differ_and_default_is_official():
    maps, masks = sample(7)
    official = aupro(maps, masks, max_fpr=0.3, definition="official")
    assert aupro(maps, masks) == official
    assert abs(official - aupro(maps, masks, definition="anomalyclip")) > 1e-4


def test_unknown_definition_is_a_clear_error():
    maps, masks = sample(1)
    with pytest.raises(ValueError, match="official.*anomalyclip"):
        aupro(maps, masks, definition="mvtec")

