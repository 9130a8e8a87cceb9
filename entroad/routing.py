"""Entropy-driven token routing, path adapters and routed tokens (METHOD.md §4).

Two adaptation paths: *localised* (low relational uncertainty) and *diffuse* (high). The
router turns the entropy map ``z`` into the diffuse weight ``r_i``; each path has its own
zero-initialised residual adapter, so training starts exactly at CLIP's features.

Design choice (the spec is silent): adapters and conditioning MLPs are shared across the
feature layers. Layer statistics are already equalised by ``ln_post`` + ``proj`` + L2
normalisation, and fewer parameters fitted on one auxiliary domain transfer better to
unseen ones (the whole point of zero-shot training).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class Router(nn.Module):
    """``soft``: r = σ((z − β)/τ) (learnable β, τ); ``hard``: top-ρ → diffuse; ``none``: 0.5."""

    def __init__(self, mode: str = "soft", ratio: float = 0.5, tau_init: float = 1.0):
        super().__init__()
        if mode not in ("soft", "hard", "none"):
            raise ValueError(f"routing must be soft, hard or none, got {mode!r}")
        self.mode, self.ratio = mode, ratio
        self.beta = nn.Parameter(torch.zeros(()))
        self.tau_raw = nn.Parameter(torch.tensor(_inverse_softplus(tau_init)))

    @property
    def tau(self) -> torch.Tensor:
        return F.softplus(self.tau_raw)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, N) -> diffuse weight r (B, N) in [0, 1]."""
        if self.mode == "soft":
            return torch.sigmoid((z - self.beta) / self.tau)
        if self.mode == "none":
            return torch.full_like(z, 0.5)
        k = max(1, round(self.ratio * z.shape[-1]))
        idx = z.topk(k, dim=-1).indices
        return torch.zeros_like(z).scatter_(-1, idx, 1.0)


class ResidualMLP(nn.Module):
    """``x ↦ W2 σ(W1 x)`` with ``W2`` zero-initialised (the caller adds the residual)."""

    def __init__(self, dim: int, reduction: int, out_dim: int | None = None):
        super().__init__()
        hidden = max(1, dim // reduction)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out_dim or dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def routed_tokens(features: torch.Tensor, r: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropy-weighted pooling ``t_b = Σ ω_i^b F_i / Σ ω_i^b``.

    features (B, L, N, C), r (B, N) -> (t_loc, t_dif), each (B, L, C).
    """
    w_dif = r.unsqueeze(1).unsqueeze(-1)  # (B, 1, N, 1)
    w_loc = 1.0 - w_dif
    t_loc = (w_loc * features).sum(2) / w_loc.sum(2).clamp_min(eps)
    t_dif = (w_dif * features).sum(2) / w_dif.sum(2).clamp_min(eps)
    return t_loc, t_dif
