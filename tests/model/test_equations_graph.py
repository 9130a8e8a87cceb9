"""METHOD §2-3 node by node: relation graph, per-node 2-D / 1-D / transition densities,
standardisation and the layer mean that makes the model's entropy map."""

from __future__ import annotations

import math

import pytest
import torch

from entroad.entropy import (
    kmeans_partition,
    relation_graph,
    standardize,
    structural_entropy_1d,
    structural_entropy_2d,
    transition_entropy,
)
from tests.model.conftest import make_model
from tests.model.test_equations_vision import reference_two_streams


def ref_graph(attn: list[list[float]]):
    """P and W of one (1+N)x(1+N) attention matrix with plain loops."""
    n = len(attn) - 1
    p = [[0.0] * n for _ in range(n)]
    for i in range(n):
        row = [attn[i + 1][j + 1] if i != j else 0.0 for j in range(n)]
        s = sum(row)
        p[i] = [v / s for v in row]
    w = [[(p[i][j] + p[j][i]) / 2 for j in range(n)] for i in range(n)]
    return p, w


def ref_density_2d(w, labels):
    """e_i = h_i / π_i with h_i = −(d_i/vol)·log2(d_i/vol_j) − (d_i/vol_j)·(g_j/vol)·log2(vol_j/vol)."""
    n = len(w)
    d = [sum(w[i]) for i in range(n)]
    vol = sum(d)
    out = []
    for i in range(n):
        j = labels[i]
        members = [a for a in range(n) if labels[a] == j]
        vol_j = sum(d[a] for a in members)
        g_j = sum(w[a][b] for a in members for b in range(n) if labels[b] != j)
        h = -(d[i] / vol) * math.log2(d[i] / vol_j) - (d[i] / vol_j) * (g_j / vol) * math.log2(vol_j / vol)
        out.append(h / (d[i] / vol))
    return out


def ref_standardize(e):
    m = sum(e) / len(e)
    sd = math.sqrt(sum((v - m) ** 2 for v in e) / len(e))  # population std
    return [(v - m) / sd for v in e]


def test_relation_graph_by_hand():
    # CLS + 3 patches; CLS row/column must be dropped, the diagonal zeroed, rows renormalised
    attn = [
        [0.4, 0.2, 0.2, 0.2],
        [0.5, 0.1, 0.3, 0.1],
        [0.1, 0.2, 0.6, 0.1],
        [0.3, 0.3, 0.1, 0.3],
    ]
    p, w = relation_graph(torch.tensor([attn], dtype=torch.float64))
    # patch 0: row (0.1, 0.3, 0.1) -> diagonal dropped -> (0, 0.3, 0.1)/0.4
    assert p[0, 0].tolist() == pytest.approx([0.0, 0.75, 0.25])
    assert p[0, 1].tolist() == pytest.approx([2 / 3, 0.0, 1 / 3])
    assert p[0, 2].tolist() == pytest.approx([0.75, 0.25, 0.0])
    assert w[0, 0, 1].item() == pytest.approx((0.75 + 2 / 3) / 2)
    rp, rw = ref_graph(attn)
    assert torch.allclose(p[0], torch.tensor(rp, dtype=torch.float64))
    assert torch.allclose(w[0], torch.tensor(rw, dtype=torch.float64))


def test_knn_keeps_the_union_of_each_nodes_strongest_relations():
    torch.manual_seed(4)
    attn = torch.softmax(torch.randn(1, 9, 9) * 2, -1).double()
    _, w = relation_graph(attn)
    _, wk = relation_graph(attn, knn=2)
    n = 8
    for i in range(n):
        for j in range(n):
            top_i = sorted(range(n), key=lambda c: -w[0, i, c].item())[:2]
            top_j = sorted(range(n), key=lambda c: -w[0, j, c].item())[:2]
            keep = j in top_i or i in top_j
            assert wk[0, i, j].item() == pytest.approx(w[0, i, j].item() if keep else 0.0)


@pytest.mark.parametrize("seed", range(3))
def test_2d_density_per_node(seed):
    g = torch.Generator().manual_seed(seed)
    attn = torch.softmax(torch.randn(1, 13, 13, generator=g) * 2, -1).double()
    labels = torch.randint(0, 3, (1, 12), generator=g)
    labels[0, :3] = torch.tensor([0, 1, 2])  # every module non-empty
    _, w = relation_graph(attn)
    h, e = structural_entropy_2d(w, labels, 3)
    ref = ref_density_2d(w[0].tolist(), labels[0].tolist())
    assert e[0].tolist() == pytest.approx(ref, rel=1e-10)
    pi = w.sum(-1) / w.sum()
    assert torch.allclose(h, e * pi)


def test_1d_density_and_transition_entropy_per_node():
    g = torch.Generator().manual_seed(7)
    attn = torch.softmax(torch.randn(1, 7, 7, generator=g) * 2, -1).double()
    p, w = relation_graph(attn)
    n = 6
    d = [sum(w[0, i].tolist()) for i in range(n)]
    vol = sum(d)
    h1, e1 = structural_entropy_1d(w)
    assert e1[0].tolist() == pytest.approx([-math.log2(di / vol) for di in d], rel=1e-10)
    assert h1[0].tolist() == pytest.approx([-(di / vol) * math.log2(di / vol) for di in d], rel=1e-10)
    ref_t = [-sum(x * math.log2(x) for x in p[0, i].tolist() if x > 0) / math.log2(n - 1) for i in range(n)]
    assert transition_entropy(p)[0].tolist() == pytest.approx(ref_t, rel=1e-10)


def test_standardize_is_population_z_score():
    e = torch.tensor([[1.0, 2.0, 4.0, 9.0]], dtype=torch.float64)
    assert standardize(e)[0].tolist() == pytest.approx(ref_standardize(e[0].tolist()), abs=1e-6)


@pytest.mark.parametrize("mode", ["2d", "1d", "transition"])
def test_entropy_map_is_the_mean_over_graph_layers(tiny_backbone, images, mode):
    model = make_model(tiny_backbone, entropy=mode, graph_layers=[2, 4], modules=4)
    out = model.predict(images)
    _, probs, _ = reference_two_streams(model.clip.visual, images, model.vv_start, model.feature_layers, [2, 4])
    zs = []
    for a in probs:
        a = a.double()
        per_image = []
        for b in range(a.shape[0]):
            p, w = ref_graph(a[b].tolist())
            if mode == "2d":  # the partition is an algorithm, not an equation: take the library's
                labels = kmeans_partition(torch.tensor([p]).float(), 4, model.cfg.kmeans_iters, model.cfg.kmeans_seed)
                e = ref_density_2d(w, labels[0].tolist())
            elif mode == "1d":
                d = [sum(r) for r in w]
                e = [-math.log2(x / sum(d)) for x in d]
            else:
                e = [-sum(x * math.log2(x) for x in r if x > 0) / math.log2(len(r) - 1) for r in p]
            per_image.append(ref_standardize(e))
        zs.append(torch.tensor(per_image))
    ref = (sum(zs) / len(zs)).view(3, 7, 7).float()
    assert torch.allclose(out.entropy_map, ref, atol=1e-3), (out.entropy_map - ref).abs().max()


def test_no_entropy_routes_every_patch_alike(tiny_backbone, images):
    """entropy none: a constant entropy, so routing cannot tell patches apart."""
    out = make_model(tiny_backbone, entropy="none").predict(images)
    r = out.routing_map.flatten(1)
    assert torch.allclose(r, r[:, :1].expand_as(r))
