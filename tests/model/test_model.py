"""EntroAD forward: contracts, zero-init, options, determinism, robustness."""

from __future__ import annotations

import itertools

import pytest
import torch

from entroad.errors import ConfigError, InputError
from entroad.model import LEARNABLE_PREFIXES, EntroAD
from tests.conftest import tiny_params
from tests.model.conftest import make_model


def test_output_contract(tiny_backbone, images):
    model = make_model(tiny_backbone)
    out = model.predict(images)
    b, s, g = 3, 112, 7
    assert out.score.shape == (b,)
    assert out.anomaly_map.shape == (b, s, s)
    for m in (out.entropy_map, out.routing_map, out.confidence_map):
        assert m.shape == (b, g, g)
    assert set(out.branch_maps) == {"adapted", "prior", "localised", "diffuse"}
    assert all(v.shape == (b, s, s) for v in out.branch_maps.values())
    assert set(out.image_probs) == {"fused", "adapted", "prior"}
    assert ((out.anomaly_map >= 0) & (out.anomaly_map <= 1)).all()
    assert ((out.score >= 0) & (out.score <= 1)).all()


def test_main_stream_is_clip_forward(tiny_backbone, images):
    model = make_model(tiny_backbone)
    ref = model.clip.encode_image(images, normalize=True)
    got = model.visual(images).global_embedding
    assert torch.allclose(ref, got, atol=1e-5)


def test_zero_init_adapted_path_equals_unadapted_features(tiny_backbone, images):
    model = make_model(tiny_backbone)
    feats = model.visual(images).patch_features
    for name in ("loc", "dif"):
        assert torch.count_nonzero(model.adapters[name](feats)) == 0
    out = model.predict(images)
    # both paths see exactly CLIP's features and the unshifted learnable prompts
    assert torch.equal(out.branch_maps["localised"], out.branch_maps["diffuse"])
    t = model.adapted_text()
    expected = torch.softmax(torch.einsum("blnc,sc->blns", feats, t) / model.cfg.temperature, -1)[..., 1]
    assert torch.allclose(out.layer_probs["adapted"], expected, atol=1e-6)


def test_only_listed_tensors_are_trainable(tiny_backbone):
    model = make_model(tiny_backbone)
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(k.startswith(LEARNABLE_PREFIXES) for k in trainable)
    assert not any(p.requires_grad for p in model.clip.parameters())
    assert set(model.learnable_state_dict()) == trainable
    assert model.count_learnable() == sum(p.numel() for k, p in model.named_parameters() if k in trainable)


def test_backbone_bit_identical_and_gradient_free_after_training_steps(tiny_backbone, images):
    from entroad.config import TrainConfig
    from entroad.losses import entroad_loss

    model = make_model(tiny_backbone).train()
    before = {k: v.clone() for k, v in model.clip.state_dict().items()}
    opt = torch.optim.Adam([p for _, p in model.learnable_parameters()], lr=1e-2)
    masks = (torch.rand(3, 112, 112) > 0.9).float()
    learn_before = {k: v.clone() for k, v in model.learnable_state_dict().items()}
    for _ in range(3):
        out = model(images)
        loss, _ = entroad_loss(out, masks, torch.ones(3, dtype=torch.bool), torch.tensor([0, 1, 1]), TrainConfig(), 0.5)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in model.clip.parameters())
        opt.step()
    after = model.clip.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    changed = [k for k, v in model.learnable_state_dict().items() if not torch.equal(v, learn_before[k])]
    assert any(k.startswith("adapters.") for k in changed) and any(k.startswith("prompts.") for k in changed)


OPTIONS = list(
    itertools.product(["2d", "1d", "transition", "none"], ["soft", "hard", "none"], ["dual", "adapted", "prior"], [True, False])
)


@pytest.mark.parametrize("entropy,routing,branches,confidence", OPTIONS)
def test_every_option_combination_runs(tiny_backbone, images, entropy, routing, branches, confidence):
    model = make_model(
        tiny_backbone, perturb=True, entropy=entropy, routing=routing, branches=branches, confidence=confidence
    )
    out = model.predict(images)
    assert torch.isfinite(out.anomaly_map).all() and torch.isfinite(out.score).all()
    if routing == "none":
        assert torch.all(out.routing_map == 0.5)
    if routing == "hard":
        assert set(out.routing_map.unique().tolist()) <= {0.0, 1.0}
        assert out.routing_map.flatten(1).mean(1).allclose(torch.full((3,), round(0.5 * 49) / 49))
    if not confidence:
        assert torch.all(out.confidence_map == 0.5)
    if branches == "prior":
        assert torch.allclose(out.anomaly_map, out.branch_maps["prior"])
    if branches == "adapted":
        assert torch.allclose(out.anomaly_map, out.branch_maps["adapted"])
    if entropy == "none" and routing != "hard":  # constant entropy: no patch routed apart
        r = out.routing_map.flatten(1)
        assert torch.allclose(r, r[:, :1].expand_as(r))


def test_options_change_the_output_where_they_should(tiny_backbone, images):
    def run(**kw):
        return make_model(tiny_backbone, perturb=True, **kw).predict(images)

    base = run()
    # entropy mode changes the entropy map, hence the routing, hence the fused map
    for mode in ("1d", "transition"):
        other = run(entropy=mode)
        assert not torch.allclose(other.entropy_map, base.entropy_map)
        assert not torch.allclose(other.anomaly_map, base.anomaly_map)
    assert not torch.allclose(run(routing="none").anomaly_map, base.anomaly_map)
    assert not torch.allclose(run(routing="hard").anomaly_map, base.anomaly_map)
    assert not torch.allclose(run(confidence=False).anomaly_map, base.anomaly_map)
    assert not torch.allclose(run(branches="prior").anomaly_map, base.anomaly_map)
    # alpha only changes the score, sigma only the map
    a1 = run(alpha=1.0)
    assert torch.allclose(a1.anomaly_map, base.anomaly_map) and not torch.allclose(a1.score, base.score)
    s0 = run(sigma=0.0)
    assert not torch.allclose(s0.anomaly_map, base.anomaly_map)
    assert torch.allclose(s0.image_probs["fused"], base.image_probs["fused"])
    # the prior branch does not depend on the learnable parts at all
    assert torch.allclose(run(routing="hard").branch_maps["prior"], base.branch_maps["prior"])


def test_class_names_change_the_prior(tiny_backbone, images):
    model = make_model(tiny_backbone, use_class_names=True)
    a = model.predict(images, ["screw", "screw", "screw"]).branch_maps["prior"]
    b = model.predict(images, ["wood", "wood", "wood"]).branch_maps["prior"]
    c = model.predict(images).branch_maps["prior"]
    assert not torch.allclose(a, b) and not torch.allclose(a, c)


def test_batch_equals_per_image(tiny_backbone, images):
    model = make_model(tiny_backbone, perturb=True)
    batch = model.predict(images)
    for i in range(images.shape[0]):
        single = model.predict(images[i : i + 1])
        assert torch.allclose(single.anomaly_map[0], batch.anomaly_map[i], atol=1e-5)
        assert torch.allclose(single.score[0], batch.score[i], atol=1e-5)
        assert torch.allclose(single.entropy_map[0], batch.entropy_map[i], atol=1e-4)


def test_same_seed_same_outputs():
    params = tiny_params()
    a = EntroAD.build(params).predict(torch.ones(1, 3, 112, 112))
    b = EntroAD.build(params).predict(torch.ones(1, 3, 112, 112))
    assert torch.equal(a.anomaly_map, b.anomaly_map) and torch.equal(a.score, b.score)
    c = EntroAD.build(tiny_params(**{"train.seed": 5})).predict(torch.ones(1, 3, 112, 112))
    assert not torch.equal(a.anomaly_map, c.anomaly_map)


@pytest.mark.parametrize("value", [0.0, 1.0, -2.0])
def test_constant_images_give_finite_outputs(tiny_backbone, value):
    model = make_model(tiny_backbone, perturb=True)
    out = model.predict(torch.full((2, 3, 112, 112), value))
    for t in (out.score, out.anomaly_map, out.entropy_map, out.routing_map, out.confidence_map):
        assert torch.isfinite(t).all()


def test_bad_inputs_are_clear_errors(tiny_backbone):
    model = make_model(tiny_backbone)
    with pytest.raises(InputError, match=r"\(B, 3, 112, 112\)"):
        model.predict(torch.zeros(1, 3, 96, 96))
    with pytest.raises(InputError, match="NaN"):
        model.predict(torch.full((1, 3, 112, 112), float("nan")))


def test_layer_options(tiny_backbone, images):
    last = make_model(tiny_backbone, feature_layers=[4])  # the analogue of [24] on ViT-L
    assert last.predict(images).layer_probs["fused"].shape[1] == 1
    assert make_model(tiny_backbone).feature_layers == [1, 2, 3, 4]
    with pytest.raises(ConfigError, match="model.feature_layers"):
        make_model(tiny_backbone, feature_layers=[2, 9])
    with pytest.raises(ConfigError, match="model.vv_start"):
        make_model(tiny_backbone, vv_start=3, feature_layers=[2, 4])


@pytest.mark.parametrize("grid,size,sigma", [(7, 112, 4.0), (14, 224, 4.0), (5, 40, 6.0), (7, 112, 0.0)])
def test_pixel_maps_equal_bilinear_upsampling_then_scipy_gaussian(grid, size, sigma):
    """The one-matrix map path reproduces AnomalyCLIP's post-processing: bilinear upsampling
    (torch, align_corners=False) followed by scipy.ndimage.gaussian_filter (mode reflect)."""
    from scipy.ndimage import gaussian_filter

    from entroad.model import upsample_blur_matrix

    maps = torch.rand(3, grid, grid, generator=torch.Generator().manual_seed(grid))
    a = upsample_blur_matrix(grid, size, sigma)
    ours = a @ maps @ a.T
    up = torch.nn.functional.interpolate(maps[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    ref = torch.stack([torch.from_numpy(gaussian_filter(m.double().numpy(), sigma, mode="reflect", truncate=4.0))
                       if sigma > 0 else m for m in up]).float()
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()
