"""METHOD §4-6 against a reference written from the spec, patch by patch: router, path
adapters, routed features and tokens, the per-path text shift Δ_b, the branch
probabilities, the confidence, the fusion, the image-level branches, the map and the score.

The model gets non-default β, τ, γ, α and random (not zero) adapter and conditioner
outputs, so that a swapped pair or a dropped exponent changes the numbers.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from entroad.routing import ResidualMLP, Router
from tests.model.conftest import make_model


def inv_softplus(y: float) -> float:
    return math.log(math.expm1(y))


def mlp(m: ResidualMLP, x: torch.Tensor) -> torch.Tensor:
    hidden = F.gelu(x @ m.fc1.weight.T + m.fc1.bias)
    return hidden @ m.fc2.weight.T + m.fc2.bias


def abnormal(x: torch.Tensor, t: torch.Tensor, temp: float) -> torch.Tensor:
    """softmax over [normal, abnormal] of ⟨x, t⟩/temp, abnormal entry; x (N, C), t (2, C)."""
    a0, a1 = (x @ t[0]) / temp, (x @ t[1]) / temp
    return torch.exp(a1) / (torch.exp(a0) + torch.exp(a1))


def h2(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-6, 1 - 1e-6)
    return -(p * torch.log2(p) + (1 - p) * torch.log2(1 - p))


def reference_head(model, feats, glob, z, alpha, sigma, temp):
    """Everything after the visual pass, from METHOD §4-6, with the documented deviations:
    routed features renormalised, Δ_b a per-layer 2C shift, image shift = mean of the two."""
    b, n_layers, n, c = feats.shape
    beta, tau = model.router.beta.item(), F.softplus(model.router.tau_raw).item()
    gamma = F.softplus(model.gamma_raw).item()
    t_a = model.prompts(model.text)  # Tᴬ (2, C), pinned by test_equations_text
    t_0 = model.prior_text
    r = 1.0 / (1.0 + torch.exp(-(z - beta) / tau))  # (B, N) diffuse weight
    res = {k: torch.zeros(b, n_layers, n) for k in ("loc", "dif", "adapted", "prior", "conf", "fused")}
    img = {k: torch.zeros(b) for k in ("adapted", "prior", "conf", "fused")}
    for i in range(b):
        shifts = []
        for layer in range(n_layers):
            f = feats[i, layer]  # (N, C)
            ri = r[i][:, None]
            f_loc = f + mlp(model.adapters["loc"], f)
            f_dif = f + mlp(model.adapters["dif"], f)
            routed = F.normalize((1 - ri) * f_loc + ri * f_dif, dim=-1)
            t_loc = ((1 - ri) * f).sum(0) / (1 - ri).sum()
            t_dif = (ri * f).sum(0) / ri.sum()
            d_loc = mlp(model.conditioners["loc"], t_loc).view(2, c)
            d_dif = mlp(model.conditioners["dif"], t_dif).view(2, c)
            shifts.append((d_loc + d_dif) / 2)
            p_loc = abnormal(routed, F.normalize(t_a + d_loc, dim=-1), temp)
            p_dif = abnormal(routed, F.normalize(t_a + d_dif, dim=-1), temp)
            p_a = (1 - r[i]) * p_loc + r[i] * p_dif
            p_0 = abnormal(f, t_0, temp)
            conf = (1 - h2(p_a)) ** gamma
            for key, val in zip(res, (p_loc, p_dif, p_a, p_0, conf, conf * p_a + (1 - conf) * p_0), strict=True):
                res[key][i, layer] = val
        text_g = F.normalize(t_a + torch.stack(shifts).mean(0), dim=-1)
        pg_a = abnormal(glob[i : i + 1], text_g, temp)[0]
        pg_0 = abnormal(glob[i : i + 1], t_0, temp)[0]
        cg = (1 - h2(pg_a)) ** gamma
        img["adapted"][i], img["prior"][i], img["conf"][i] = pg_a, pg_0, cg
        img["fused"][i] = cg * pg_a + (1 - cg) * pg_0
    return r, res, img


@torch.no_grad()
def reference_map(layer_probs, grid, size, sigma):
    """Mean over layers -> bilinear upsample -> scipy Gaussian (AnomalyCLIP's post-processing)."""
    m = layer_probs.mean(1).view(-1, 1, grid, grid)
    up = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    return torch.stack([torch.from_numpy(gaussian_filter(u.double().numpy(), sigma, mode="reflect")) for u in up]).float()


@pytest.fixture(scope="module")
def tuned(tiny_backbone):
    model = make_model(tiny_backbone, seed=3, perturb=True, alpha=0.3, sigma=2.0)
    with torch.no_grad():
        model.router.beta.fill_(0.3)
        model.router.tau_raw.fill_(inv_softplus(0.7))
        model.gamma_raw.fill_(inv_softplus(1.7))
        for m in model.adapters.values():
            torch.nn.init.normal_(m.fc2.bias, std=0.2)
    return model


def test_head_matches_reference(tuned, images):
    model = tuned
    out = model.predict(images)
    z = out.entropy_map.flatten(1)  # pinned by test_equations_graph
    with torch.no_grad():
        vf = model.visual(images)
        r, res, img = reference_head(model, vf.patch_features, vf.global_embedding, z, 0.3, 2.0, model.cfg.temperature)
    close = dict(atol=2e-5, rtol=1e-4)
    assert torch.allclose(out.routing, r, **close)
    assert torch.allclose(out.layer_probs["adapted"], res["adapted"], **close)
    assert torch.allclose(out.layer_probs["prior"], res["prior"], **close)
    assert torch.allclose(out.layer_confidence, res["conf"], **close)
    assert torch.allclose(out.layer_probs["fused"], res["fused"], **close)
    assert torch.allclose(out.confidence_map.flatten(1), res["conf"].mean(1), **close)
    for key in ("adapted", "prior", "fused"):
        assert torch.allclose(out.image_probs[key], img[key], **close), key
    assert torch.allclose(out.image_confidence, img["conf"], **close)
    g, s = model.grid, model.image_size
    amap = reference_map(res["fused"], g, s, 2.0)
    assert torch.allclose(out.anomaly_map, amap, atol=1e-5)
    assert torch.allclose(out.branch_maps["localised"], reference_map(res["loc"], g, s, 2.0), atol=1e-5)
    assert torch.allclose(out.branch_maps["diffuse"], reference_map(res["dif"], g, s, 2.0), atol=1e-5)
    score = 0.3 * img["fused"] + 0.7 * amap.flatten(1).amax(1)
    assert torch.allclose(out.score, score, atol=1e-5)


def test_reference_sees_the_asymmetries(tuned, images):
    """Guards the test above: the paths, the branches and the two score terms really differ
    here, so swapping any pair of them changes what the model returns."""
    out = tuned.predict(images)
    lp = out.layer_probs
    assert (out.branch_maps["localised"] - out.branch_maps["diffuse"]).abs().max() > 1e-3
    assert (lp["adapted"] - lp["prior"]).abs().max() > 1e-2
    assert (out.routing - 0.5).abs().max() > 0.1
    assert (out.layer_confidence - 0.5).abs().max() > 1e-2
    assert (out.image_probs["fused"] - out.anomaly_map.flatten(1).amax(1)).abs().max() > 1e-3


@pytest.mark.parametrize("branches,confidence", [("adapted", True), ("prior", True), ("dual", False)])
def test_branch_and_confidence_options(tiny_backbone, images, branches, confidence):
    model = make_model(tiny_backbone, perturb=True, branches=branches, confidence=confidence)
    out = model.predict(images)
    lp = out.layer_probs
    if branches == "adapted":
        assert torch.equal(lp["fused"], lp["adapted"])
    elif branches == "prior":
        assert torch.equal(lp["fused"], lp["prior"])
    else:  # confidence off: c = 0.5, an even mix
        assert torch.all(out.layer_confidence == 0.5)
        assert torch.allclose(lp["fused"], 0.5 * lp["adapted"] + 0.5 * lp["prior"])


def test_soft_router_formula():
    router = Router("soft")
    with torch.no_grad():
        router.beta.fill_(0.4)
        router.tau_raw.fill_(inv_softplus(2.0))
    z = torch.tensor([[-1.0, 0.4, 2.0]])
    expected = [1 / (1 + math.exp(-(v - 0.4) / 2.0)) for v in z[0].tolist()]
    assert router(z)[0].tolist() == pytest.approx(expected, rel=1e-6)
    assert Router("soft").tau.item() == pytest.approx(1.0, rel=1e-6)  # τ init ≈ 1, β init 0
    assert Router("soft").beta.item() == 0.0


def test_hard_router_sends_the_top_rho_patches_to_the_diffuse_path():
    z = torch.tensor([[0.3, -2.0, 5.0, 1.0, 0.0, -1.0, 2.0, 0.1]])
    r = Router("hard", ratio=0.25)(z)
    assert r[0].tolist() == [0, 0, 1, 0, 0, 0, 1, 0]  # the 2 largest z
    assert torch.all(Router("none")(z) == 0.5)


def test_zero_initialised_adapters_and_conditioners(tiny_backbone, images):
    model = make_model(tiny_backbone)
    x = torch.randn(5, model.embed_dim)
    for m in [*model.adapters.values(), *model.conditioners.values()]:
        assert torch.count_nonzero(m(x)) == 0
        assert torch.count_nonzero(m.fc1.weight) > 0  # only the last layer starts at zero
    out = model.predict(images)
    vf = model.visual(images)
    t_a = model.prompts(model.text)
    # at init: adapted branch = CLIP features against the unshifted learnable prompts
    ref = torch.stack([torch.stack([abnormal(vf.patch_features[i, layer], t_a, model.cfg.temperature)
                                    for layer in range(vf.patch_features.shape[1])]) for i in range(3)])
    assert torch.allclose(out.layer_probs["adapted"], ref, atol=1e-5)
