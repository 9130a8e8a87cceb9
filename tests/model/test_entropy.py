"""Structural entropy: node contributions sum to the graph's 1-D / 2-D structural entropy,
checked against a plain loop implementation and a hand-computed graph."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from entroad.entropy import (
    kmeans_partition,
    patch_entropy,
    relation_graph,
    standardize,
    structural_entropy_1d,
    structural_entropy_2d,
    transition_entropy,
)


def ref_h1(w: np.ndarray) -> float:
    d = w.sum(1)
    vol = d.sum()
    return -sum((di / vol) * math.log2(di / vol) for di in d if di > 0)


def ref_h2(w: np.ndarray, labels: np.ndarray) -> float:
    """Li & Pan 2-D structural entropy by explicit loops over modules, nodes and edges."""
    n = len(w)
    d = w.sum(1)
    vol = d.sum()
    total = 0.0
    for j in sorted(set(labels.tolist())):
        members = [i for i in range(n) if labels[i] == j]
        vol_j = sum(d[i] for i in members)
        cut = sum(w[i, k] for i in members for k in range(n) if labels[k] != j)
        for i in members:
            total -= (d[i] / vol) * math.log2(d[i] / vol_j)
        total -= (cut / vol) * math.log2(vol_j / vol)
    return total


def random_graph(n: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    a = rng.random((n, n)) ** 3
    return torch.tensor(a + a.T, dtype=torch.float64).fill_diagonal_(0)


def test_hand_computed_path_graph():
    # path 0-1-2-3, unit weights, partition {0,1} {2,3}
    w = torch.zeros(1, 4, 4, dtype=torch.float64)
    for i, k in ((0, 1), (1, 2), (2, 3)):
        w[0, i, k] = w[0, k, i] = 1.0
    h1, _ = structural_entropy_1d(w)
    assert h1.sum().item() == pytest.approx(1 / 3 + math.log2(3), abs=1e-12)
    h2, e2 = structural_entropy_2d(w, torch.tensor([[0, 0, 1, 1]]), 2)
    assert h2.sum().item() == pytest.approx(math.log2(3) - 1 / 3, abs=1e-12)
    # density = h / pi
    pi = w.sum(-1) / w.sum()
    assert torch.allclose(e2 * pi, h2)


@pytest.mark.parametrize("seed", range(5))
def test_node_contributions_sum_to_reference(seed):
    n, k = 30, 4
    w = random_graph(n, seed)
    labels = torch.tensor(np.random.default_rng(seed).integers(0, k, n))
    h1, _ = structural_entropy_1d(w[None])
    h2, _ = structural_entropy_2d(w[None], labels[None], k)
    assert h1.sum().item() == pytest.approx(ref_h1(w.numpy()), rel=1e-10)
    assert h2.sum().item() == pytest.approx(ref_h2(w.numpy(), labels.numpy()), rel=1e-10)
    # H2 = H1 + sum_j (vol_j - g_j)/vol * log2(vol_j/vol) <= H1 for any partition
    assert h2.sum().item() <= h1.sum().item() + 1e-9


def test_2d_on_kmeans_partition_of_attention_graph():
    torch.manual_seed(0)
    attn = torch.softmax(torch.randn(3, 26, 26) * 3, -1)
    p, w = relation_graph(attn)
    labels = kmeans_partition(p, 5, iters=10, seed=0)
    h2, _ = structural_entropy_2d(w.double(), labels, 5)
    for b in range(3):
        assert h2[b].sum().item() == pytest.approx(ref_h2(w[b].double().numpy(), labels[b].numpy()), rel=1e-9)


def test_relation_graph_properties():
    torch.manual_seed(1)
    attn = torch.softmax(torch.randn(2, 17, 17), -1)
    p, w = relation_graph(attn)
    assert p.shape == (2, 16, 16)
    assert torch.allclose(p.sum(-1), torch.ones(2, 16))
    assert torch.all(torch.diagonal(p, dim1=-2, dim2=-1) == 0)
    assert torch.allclose(w, w.transpose(-2, -1))
    _, wk = relation_graph(attn, knn=3)
    assert torch.allclose(wk, wk.transpose(-2, -1))
    nnz = (wk > 0).sum(-1)
    assert nnz.min() >= 3 and nnz.max() < 15  # sparse, yet every node keeps its 3 strongest


def test_kmeans_is_deterministic_and_batch_independent():
    torch.manual_seed(2)
    rows = torch.softmax(torch.randn(4, 40, 40) * 2, -1)
    a = kmeans_partition(rows, 6, 10, seed=3)
    b = kmeans_partition(rows, 6, 10, seed=3)
    assert torch.equal(a, b)
    for i in range(4):
        assert torch.equal(kmeans_partition(rows[i : i + 1], 6, 10, seed=3)[0], a[i])
    assert a.min() >= 0 and a.max() < 6
    # well separated blocks are recovered exactly (up to label names)
    blocks = torch.block_diag(*[torch.ones(10, 10)] * 4)[None] + 1e-3
    lab = kmeans_partition(blocks, 4, 10, seed=0)[0]
    assert len(set(lab.tolist())) == 4
    assert all(len(set(lab[i * 10 : (i + 1) * 10].tolist())) == 1 for i in range(4))


def test_transition_entropy_bounds():
    n = 10
    uniform = (torch.ones(1, n, n) - torch.eye(n)) / (n - 1)
    assert torch.allclose(transition_entropy(uniform), torch.ones(1, n))
    peaked = torch.roll(torch.eye(n), 1, 1)[None]
    assert torch.allclose(transition_entropy(peaked), torch.zeros(1, n))


@pytest.mark.parametrize("mode", ["2d", "1d", "transition", "none"])
def test_patch_entropy_is_standardised(mode):
    torch.manual_seed(3)
    attn = torch.softmax(torch.randn(2, 50, 50) * 2, -1)
    z = patch_entropy(attn, mode, k=4)
    assert z.shape == (2, 49) and torch.isfinite(z).all()
    if mode != "none":  # "none" is constant by construction: nothing to check
        assert torch.allclose(z.mean(-1), torch.zeros(2), atol=1e-5)
        assert torch.allclose(z.std(-1, unbiased=False), torch.ones(2), atol=1e-3)


def test_standardize_constant_is_zero():
    assert torch.all(standardize(torch.full((2, 9), 3.0)) == 0)


def test_patch_entropy_of_uniform_attention_is_finite():
    attn = torch.full((1, 10, 10), 0.1)
    for mode in ("2d", "1d", "transition"):
        assert torch.isfinite(patch_entropy(attn, mode, k=3)).all()
