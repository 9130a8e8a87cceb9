"""Patch relation graph and patch-level structural entropy (METHOD.md §2-3).

All functions are batched over a leading dimension and loop only over modules / k-means
iterations, never over patches. Entropies are in bits.

Structural information (Li & Pan, 2016) of a weighted undirected graph with degrees ``d_i``
and volume ``vol``:

* 1-D: ``H¹ = -Σ_i (d_i/vol) log2(d_i/vol)``;
* 2-D for a partition into modules ``X_j`` with volume ``vol_j`` and cut ``g_j``:
  ``H² = Σ_j [ -Σ_{i∈X_j} (d_i/vol) log2(d_i/vol_j) - (g_j/vol) log2(vol_j/vol) ]``.

The node contributions ``h_i`` below sum exactly to these, and routing uses the *density*
``e_i = h_i / π_i`` (``π_i = d_i/vol``): the bits needed to locate patch *i* under the
stationary random walk.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

EPS = 1e-12
MODES = ("2d", "1d", "transition", "none")


def relation_graph(attn: torch.Tensor, knn: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Head-averaged attention (B, 1+N, 1+N) incl. CLS -> (P, W), both (B, N, N).

    ``P``: patch-to-patch attention with the CLS row/column and the diagonal removed,
    rows renormalised (row-stochastic). ``W = (P + Pᵀ)/2``, optionally sparsified to the
    union of each patch's ``knn`` strongest relations (kept symmetric).
    """
    p = attn[..., 1:, 1:].to(torch.promote_types(attn.dtype, torch.float32))  # fp32 at least
    n = p.shape[-1]
    p = p.masked_fill(torch.eye(n, dtype=torch.bool, device=p.device), 0.0)
    p = p / p.sum(-1, keepdim=True).clamp_min(EPS)
    w = 0.5 * (p + p.transpose(-2, -1))
    if 0 < knn < n - 1:
        idx = w.topk(knn, dim=-1).indices
        keep = torch.zeros_like(w, dtype=torch.bool).scatter_(-1, idx, True)
        w = w * (keep | keep.transpose(-2, -1))
    return p, w


def kmeans_partition(rows: torch.Tensor, k: int, iters: int = 10, seed: int = 0) -> torch.Tensor:
    """Deterministic batched spherical k-means (k-means++ init) -> labels (B, N).

    The k-means++ draws use ``k`` uniforms from a generator with a fixed ``seed`` shared by
    every image (inverse-CDF sampling on each image's own D² distribution), so an image's
    partition does not depend on the batch it is in.
    """
    b, n, _ = rows.shape
    k = min(k, n)
    x = F.normalize(rows.float(), dim=-1)
    u = torch.rand(k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(x.device)
    ar = torch.arange(b, device=x.device)
    first = torch.full((b,), min(int(u[0].item() * n), n - 1), device=x.device, dtype=torch.long)
    centers = [x[ar, first]]  # each (B, D)
    best = (x @ centers[0].unsqueeze(-1)).squeeze(-1)  # (B, N) best cosine so far
    for j in range(1, k):
        d2 = (1.0 - best).clamp_min(0.0).double() ** 2
        total = d2.sum(-1, keepdim=True)
        cdf = d2.cumsum(-1) / total.clamp_min(EPS)
        pick = torch.searchsorted(cdf, u[j].expand(b, 1).contiguous()).squeeze(-1).clamp_max(n - 1)
        # all rows identical to a centre: fall back to a fixed position
        pick = torch.where(total.squeeze(-1) > 0, pick, torch.full_like(pick, min(int(u[j].item() * n), n - 1)))
        centers.append(x[ar, pick])
        best = torch.maximum(best, (x @ centers[-1].unsqueeze(-1)).squeeze(-1))
    c = torch.stack(centers, dim=1)  # (B, K, D)
    for _ in range(iters):
        labels = (x @ c.transpose(-2, -1)).argmax(-1)  # (B, N)
        onehot = F.one_hot(labels, k).to(x.dtype)  # (B, N, K)
        sums = onehot.transpose(-2, -1) @ x  # (B, K, D)
        filled = onehot.sum(1) > 0  # (B, K)
        c = torch.where(filled.unsqueeze(-1), F.normalize(sums, dim=-1), c)
    return (x @ c.transpose(-2, -1)).argmax(-1)


def structural_entropy_1d(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Node contributions ``h`` (Σ h = H¹) and densities ``e = -log2 π``; both (B, N)."""
    d = w.sum(-1)
    pi = d / d.sum(-1, keepdim=True).clamp_min(EPS)
    e = -torch.log2(pi.clamp_min(EPS))
    return pi * e, e


def structural_entropy_2d(w: torch.Tensor, labels: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Node contributions ``h`` (Σ h = H² for partition ``labels``) and densities ``h/π``."""
    d = w.sum(-1)  # (B, N)
    vol = d.sum(-1, keepdim=True).clamp_min(EPS)  # (B, 1)
    onehot = F.one_hot(labels, k).to(w.dtype)  # (B, N, K)
    vol_j = (onehot * d.unsqueeze(-1)).sum(1)  # (B, K)
    internal = ((w @ onehot) * onehot).sum(1)  # (B, K): Σ_{i,k ∈ X_j} W_ik
    cut_j = (vol_j - internal).clamp_min(0.0)
    vol_i = torch.gather(vol_j, 1, labels).clamp_min(EPS)  # volume of each node's module
    cut_i = torch.gather(cut_j, 1, labels)
    node_term = -torch.log2((d / vol_i).clamp_min(EPS))
    module_term = -(cut_i / vol_i) * torch.log2((vol_i / vol).clamp_min(EPS))
    e = node_term + module_term  # density: h_i / π_i
    h = (d / vol) * e
    return h, e


def transition_entropy(p: torch.Tensor) -> torch.Tensor:
    """Normalised random-walk transition entropy per node, in [0, 1]; (B, N)."""
    n = p.shape[-1]
    ent = -(p * torch.log2(p.clamp_min(EPS))).sum(-1)
    return ent / math.log2(max(n - 1, 2))


def standardize(e: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-image z-score over patches (constant input -> zeros)."""
    mean = e.mean(-1, keepdim=True)
    std = e.std(-1, keepdim=True, unbiased=False)
    return (e - mean) / (std + eps)


def patch_entropy(
    attn: torch.Tensor, mode: str = "2d", k: int = 8, iters: int = 10, seed: int = 0, knn: int = 0
) -> torch.Tensor:
    """Standardised entropy density ``z`` (B, N, fp32) of one graph layer's head-mean attention.

    Always computed in fp32 with autocast off (CUDA or CPU): the module cut ``vol_j −
    internal`` subtracts nearly equal numbers, and k-means assignments flip on rounding, so
    under bf16 the map would route patches by noise rather than by structure.
    """
    if mode not in MODES:
        raise ValueError(f"entropy mode must be one of {MODES}, got {mode!r}")
    b, t, _ = attn.shape
    if mode == "none":
        return torch.zeros(b, t - 1, device=attn.device)
    with torch.autocast(attn.device.type, enabled=False):
        p, w = relation_graph(attn.float(), knn)
        if mode == "1d":
            e = structural_entropy_1d(w)[1]
        elif mode == "transition":
            e = transition_entropy(p)
        else:
            labels = kmeans_partition(p, k, iters, seed)
            e = structural_entropy_2d(w, labels, min(k, p.shape[-1]))[1]
        return standardize(e)
