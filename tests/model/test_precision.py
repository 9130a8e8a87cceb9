"""fp32 island: the entropy map does not depend on the autocast dtype of the forward.

Under bf16 autocast the towers run in bf16, but the graph layers' attention probabilities,
the relation graph, the k-means partition and the structural entropy must stay fp32; without
that the tiny model's entropy map correlates with the fp32 one at about 0.2.
"""

from __future__ import annotations

import pytest
import torch

from entroad.entropy import patch_entropy
from tests.model.conftest import make_model


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten().double(), b.flatten().double()]))[0, 1])


@pytest.mark.parametrize("entropy", ["2d", "1d", "transition"])
def test_entropy_map_under_bf16_autocast_matches_fp32(tiny_backbone, images, entropy):
    model = make_model(tiny_backbone, entropy=entropy)
    ref = model.predict(images)
    model.compute_dtype = torch.bfloat16  # what precision: bf16 sets (autocast on any device)
    try:
        mixed = model.predict(images)
    finally:
        model.compute_dtype = torch.float32
    # the rest of the forward really ran in bf16 (else this test would prove nothing)
    assert not torch.equal(mixed.image_probs["prior"], ref.image_probs["prior"])
    assert mixed.entropy_map.dtype == torch.float32
    assert corr(mixed.entropy_map, ref.entropy_map) >= 0.999


def test_callers_autocast_keeps_the_island_fp32(tiny_backbone, images):
    model = make_model(tiny_backbone)
    ref = model.visual(images).graph_outputs
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = model.visual(images).graph_outputs
    assert all(g.dtype == torch.float32 for g in got)
    for a, b in zip(ref, got, strict=True):
        assert corr(a, b) >= 0.999


def test_patch_entropy_ignores_autocast():
    """Same fp32 input -> bit-identical output with or without an enclosing autocast."""
    g = 37
    # block-structured attention, as on a real 37x37 map: 6 regions plus noise
    labels = torch.arange(g * g) * 6 // (g * g)
    logits = (labels[:, None] == labels[None, :]).float() * 2 + torch.randn(g * g, g * g, generator=torch.Generator().manual_seed(0))
    attn = torch.softmax(torch.nn.functional.pad(logits, (1, 0, 1, 0))[None], -1)
    ref = patch_entropy(attn, "2d", k=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = patch_entropy(attn, "2d", k=8)
    assert got.dtype == torch.float32
    assert torch.equal(got, ref)
