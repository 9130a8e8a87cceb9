"""Training objective (METHOD.md §7).

``L = Σ_layers [Focal(M, mask) + Dice(M_abn, mask) + Dice(M_norm, 1 − mask)] + BCE(p_glob, y)``
on the fused output, the same again on the adapted branch alone (weight ``λ_branch``), plus
``λ_prior·L_prior + λ_bal·L_bal``. Images without a pixel label contribute only the BCE
term. Losses follow AnomalyCLIP's definitions (focal γ = 2 on the two-class map, dice with
smoothing 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from entroad.config import TrainConfig

EPS = 1e-6


def focal_loss(p_abn: torch.Tensor, mask: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Per-sample focal loss of a (B, H, W) anomaly-probability map; returns (B,)."""
    p_t = torch.where(mask > 0.5, p_abn, 1.0 - p_abn).clamp(EPS, 1.0)
    return (-((1.0 - p_t) ** gamma) * torch.log(p_t)).flatten(1).mean(1)


def dice_loss(pred: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Per-sample soft dice loss; returns (B,)."""
    pred, target = pred.flatten(1), target.flatten(1)
    inter = (pred * target).sum(1)
    return 1.0 - (2.0 * inter + smooth) / (pred.sum(1) + target.sum(1) + smooth)


def bernoulli_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    p, q = p.clamp(EPS, 1 - EPS), q.clamp(EPS, 1 - EPS)
    return p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))


def map_loss(
    layer_probs: torch.Tensor, masks: torch.Tensor, pixel_label: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Σ over layers of focal + both dice terms, averaged over pixel-labelled images."""
    if not bool(pixel_label.any()):
        return layer_probs.new_zeros(())
    b, n_layers, n = layer_probs.shape
    g = int(round(n**0.5))
    size = masks.shape[-2:]
    sel = pixel_label.bool()
    maps = F.interpolate(layer_probs[sel].view(-1, n_layers, g, g), size=size, mode="bilinear", align_corners=False)
    target = masks[sel]
    total = layer_probs.new_zeros(())
    for i in range(n_layers):
        m = maps[:, i]
        total = total + (focal_loss(m, target, gamma) + dice_loss(m, target) + dice_loss(1 - m, 1 - target)).mean()
    return total


def branch_loss(
    layer_probs: torch.Tensor,
    image_prob: torch.Tensor,
    masks: torch.Tensor,
    pixel_label: torch.Tensor,
    labels: torch.Tensor,
    gamma: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(map term, image BCE term) of one branch."""
    bce = F.binary_cross_entropy(image_prob.clamp(EPS, 1 - EPS), labels.float())
    return map_loss(layer_probs, masks, pixel_label, gamma), bce


def entroad_loss(out, masks, pixel_label, labels, cfg: TrainConfig, routing_ratio: float):
    """Total loss and its named parts (floats) for logging."""
    fused_map, fused_bce = branch_loss(
        out.layer_probs["fused"], out.image_probs["fused"], masks, pixel_label, labels, cfg.focal_gamma
    )
    total = fused_map + fused_bce
    parts = {"map": fused_map, "bce": fused_bce}
    if cfg.lambda_branch > 0:
        a_map, a_bce = branch_loss(
            out.layer_probs["adapted"], out.image_probs["adapted"], masks, pixel_label, labels, cfg.focal_gamma
        )
        parts["adapted"] = a_map + a_bce
        total = total + cfg.lambda_branch * parts["adapted"]
    # Deviation: c is detached in L_prior. The regulariser should pull the adapted branch
    # towards the prior where it is unsure, not teach γ to claim certainty (c → 1 would
    # switch the term off).
    kl = bernoulli_kl(out.layer_probs["adapted"], out.layer_probs["prior"].detach())
    parts["prior_kl"] = ((1 - out.layer_confidence.detach()) * kl).mean()
    parts["balance"] = (out.routing.mean() - routing_ratio) ** 2
    total = total + cfg.lambda_prior * parts["prior_kl"] + cfg.lambda_bal * parts["balance"]
    return total, {k: float(v.detach()) for k, v in parts.items()}
