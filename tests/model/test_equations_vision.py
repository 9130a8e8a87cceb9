"""METHOD §1 against a plain reference: the main stream is open_clip's own block forward,
the Q-K probabilities and the value-value stream are written head by head from the spec."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tests.model.conftest import make_model


def reference_two_streams(visual, images, vv_start, feature_layers, graph_layers):
    """(patch features per feature layer, head-mean Q-K probabilities per graph layer, g)."""
    x = visual._embeds(images)
    y = None
    feats, probs = [], []
    for idx, blk in enumerate(visual.transformer.resblocks, start=1):
        attn = blk.attn
        width = x.shape[-1]
        heads = attn.num_heads
        dh = width // heads
        h = blk.ln_1(x)
        qkv = h @ attn.in_proj_weight.T + attn.in_proj_bias
        q, k, v = qkv[..., :width], qkv[..., width : 2 * width], qkv[..., 2 * width :]
        if idx in graph_layers:
            total = 0
            for j in range(heads):
                cols = slice(j * dh, (j + 1) * dh)
                total = total + torch.softmax(q[..., cols] @ k[..., cols].transpose(-2, -1) / math.sqrt(dh), dim=-1)
            probs.append(total / heads)
        if idx >= vv_start:
            outs = []
            for j in range(heads):
                vj = v[..., j * dh : (j + 1) * dh]
                outs.append(torch.softmax(vj @ vj.transpose(-2, -1) / math.sqrt(dh), dim=-1) @ vj)
            vv = torch.cat(outs, dim=-1) @ attn.out_proj.weight.T + attn.out_proj.bias
            # the stream starts as the input of block vv_start and adds only attention (no MLP)
            y = (x if y is None else y) + vv
        x = blk(x)  # main stream: the unchanged CLIP block
        if idx in feature_layers:
            feats.append(F.normalize(visual.ln_post(y[:, 1:]) @ visual.proj, dim=-1))
    g = F.normalize(visual.ln_post(x[:, 0]) @ visual.proj, dim=-1)
    return torch.stack(feats, dim=1), probs, g


def test_value_value_stream_and_qk_probabilities_match_reference(tiny_backbone, images):
    # vv_start 2 (not the auto value 1) so the stream's starting point is pinned too
    model = make_model(tiny_backbone, vv_start=2, feature_layers=[2, 3, 4], graph_layers=[1, 3])
    got = model.visual(images)  # no graph_fn: the head-mean probabilities themselves
    feats, probs, g = reference_two_streams(model.clip.visual, images, 2, [2, 3, 4], [1, 3])
    assert got.patch_features.shape == feats.shape == (3, 3, 49, model.embed_dim)
    assert torch.allclose(got.patch_features, feats, atol=1e-5), (got.patch_features - feats).abs().max()
    assert len(got.graph_outputs) == 2
    for a, b in zip(got.graph_outputs, probs, strict=True):
        assert a.shape == (3, 50, 50)
        assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max()
    assert torch.allclose(got.global_embedding, g, atol=1e-5)


def test_value_value_stream_is_not_the_main_stream(tiny_backbone, images):
    """The patch features come from the V-V stream: the main stream's patch tokens differ."""
    model = make_model(tiny_backbone, feature_layers=[4])
    x = model.clip.visual._embeds(images)
    for blk in model.clip.visual.transformer.resblocks:
        x = blk(x)
    main = F.normalize(model.clip.visual.ln_post(x[:, 1:]) @ model.clip.visual.proj, dim=-1)
    assert not torch.allclose(model.visual(images).patch_features[:, 0], main, atol=1e-3)
