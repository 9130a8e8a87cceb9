"""METHOD §7 term by term, with plain per-pixel loops on small maps:
L = Σ_layers [Focal(M, mask) + Dice(M, mask) + Dice(1 − M, 1 − mask)] + BCE(p_glob, y)
on the fused output, the same again with weight λ_branch on the adapted branch, plus
λ_prior·mean((1 − c)·KL(pᴬ ‖ p⁰)) + λ_bal·(mean r − ρ)². Images without a mask give only BCE."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from entroad.config import TrainConfig
from entroad.losses import dice_loss, entroad_loss, focal_loss


def ref_focal(p: list[float], t: list[float], gamma: float) -> float:
    total = 0.0
    for pi, ti in zip(p, t, strict=True):
        pt = pi if ti > 0.5 else 1 - pi
        total += -((1 - pt) ** gamma) * math.log(pt)
    return total / len(p)


def ref_dice(p: list[float], t: list[float]) -> float:
    inter = sum(a * b for a, b in zip(p, t, strict=True))
    return 1 - (2 * inter + 1) / (sum(p) + sum(t) + 1)


def ref_bce(p: list[float], y: list[float]) -> float:
    return -sum(b * math.log(a) + (1 - b) * math.log(1 - a) for a, b in zip(p, y, strict=True)) / len(p)


def ref_kl(p: float, q: float) -> float:
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def test_focal_and_dice_by_hand():
    p = torch.tensor([[0.9, 0.2, 0.6, 0.3]])
    t = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    assert focal_loss(p, t, 2.0).item() == pytest.approx(ref_focal(p[0].tolist(), t[0].tolist(), 2.0), rel=1e-5)
    assert focal_loss(p, t, 0.0).item() == pytest.approx(ref_focal(p[0].tolist(), t[0].tolist(), 0.0), rel=1e-5)
    # dice: 1 − (2·(0.9 + 0.3) + 1) / (2.0 + 2 + 1)
    assert dice_loss(p, t).item() == pytest.approx(1 - 3.4 / 5.0, rel=1e-6)


def make_output(b: int, n_layers: int, grid: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    u = lambda *s: torch.rand(*s, generator=g) * 0.9 + 0.05  # noqa: E731 - values in (0.05, 0.95)
    return SimpleNamespace(
        layer_probs={k: u(b, n_layers, grid * grid) for k in ("fused", "adapted", "prior")},
        image_probs={k: u(b) for k in ("fused", "adapted", "prior")},
        layer_confidence=u(b, n_layers, grid * grid),
        routing=u(b, grid * grid),
    )


def ref_branch(layer_probs, image_prob, masks, pixel_label, labels, gamma):
    b, n_layers, n = layer_probs.shape
    grid, size = int(math.isqrt(n)), masks.shape[-1]
    maps = F.interpolate(layer_probs.view(b, n_layers, grid, grid), size=(size, size), mode="bilinear", align_corners=False)
    map_term = 0.0
    labelled = [i for i in range(b) if pixel_label[i]]
    for layer in range(n_layers):
        per_image = []
        for i in labelled:
            m, t = maps[i, layer].flatten().tolist(), masks[i].flatten().tolist()
            per_image.append(
                ref_focal(m, t, gamma) + ref_dice(m, t) + ref_dice([1 - v for v in m], [1 - v for v in t])
            )
        map_term += sum(per_image) / len(per_image) if per_image else 0.0
    return map_term, ref_bce(image_prob.tolist(), labels.float().tolist())


@pytest.mark.parametrize("pixel_label", [[True, True, True], [True, False, True], [False, False, False]])
def test_total_loss_and_its_weights(pixel_label):
    out = make_output(3, 2, 3, seed=sum(pixel_label))
    masks = torch.zeros(3, 6, 6)
    masks[0, 1:3, 2:5] = 1
    masks[2, 4:, :2] = 1
    labels = torch.tensor([1, 0, 1])
    pl = torch.tensor(pixel_label)
    cfg = TrainConfig(lambda_prior=0.3, lambda_bal=0.7, lambda_branch=0.5, focal_gamma=2.0)
    rho = 0.4
    total, parts = entroad_loss(out, masks, pl, labels, cfg, rho)

    f_map, f_bce = ref_branch(out.layer_probs["fused"], out.image_probs["fused"], masks, pl, labels, 2.0)
    a_map, a_bce = ref_branch(out.layer_probs["adapted"], out.image_probs["adapted"], masks, pl, labels, 2.0)
    pa, p0, c = (x.flatten().tolist() for x in (out.layer_probs["adapted"], out.layer_probs["prior"], out.layer_confidence))
    prior = sum((1 - ci) * ref_kl(a, q) for a, q, ci in zip(pa, p0, c, strict=True)) / len(pa)
    balance = (out.routing.mean().item() - rho) ** 2
    expected = f_map + f_bce + 0.5 * (a_map + a_bce) + 0.3 * prior + 0.7 * balance

    assert parts["map"] == pytest.approx(f_map, rel=1e-5)
    assert parts["bce"] == pytest.approx(f_bce, rel=1e-5)
    assert parts["adapted"] == pytest.approx(a_map + a_bce, rel=1e-5)
    assert parts["prior_kl"] == pytest.approx(prior, rel=1e-5)
    assert parts["balance"] == pytest.approx(balance, rel=1e-5)
    assert total.item() == pytest.approx(expected, rel=1e-5)
    if not any(pixel_label):
        assert parts["map"] == 0.0  # image-level-only batch: only the image terms


def test_prior_term_does_not_train_the_confidence():
    """c is detached in L_prior (a documented choice): its gradient reaches pᴬ, not c."""
    out = make_output(2, 1, 2, seed=5)
    out.layer_confidence.requires_grad_(True)
    out.layer_probs["adapted"].requires_grad_(True)
    cfg = TrainConfig(lambda_prior=1.0, lambda_bal=0.0, lambda_branch=0.0)
    total, _ = entroad_loss(out, torch.zeros(2, 4, 4), torch.zeros(2, dtype=torch.bool), torch.tensor([0, 1]), cfg, 0.5)
    total.backward()
    assert out.layer_confidence.grad is None
    assert out.layer_probs["adapted"].grad.abs().sum() > 0
