"""Two-stream frozen visual pass over open_clip's own ViT parameters (METHOD.md §1).

One loop over the blocks computes

* the **main stream** — the unchanged CLIP forward, whose final CLS token gives the global
  embedding ``g``; at the ``graph_layers`` its Q-K attention probabilities are formed
  explicitly and averaged over heads on the spot (only the (B, T, T) head mean is handed
  on, never the per-head tensor of every layer);
* the **value-value stream** (AnomalyCLIP's DPAM / CLIP-Surgery path): from block
  ``vv_start`` a parallel residual stream ``y`` starts as the block's input and accumulates
  ``out_proj(softmax(V Vᵀ/√d) V)`` of every later block, with no MLP. Its patch tokens at
  the ``feature_layers`` go through ``ln_post`` and ``proj`` and are L2-normalised.

Everything else uses ``scaled_dot_product_attention``. The tower is not modified: this
module only reads its parameters.

Precision: under autocast (bf16 on GPU) both streams run in the autocast dtype, except the
graph layers' attention probabilities and everything computed from them, which stay fp32
(see the fp32 island in ``__call__``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class VisualFeatures:
    global_embedding: torch.Tensor  # (B, C), L2-normalised
    patch_features: torch.Tensor  # (B, Lf, N, C), L2-normalised, value-value stream
    graph_outputs: list[torch.Tensor]  # graph_fn(attention) for each graph layer, in order


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, d = t.shape
    return t.view(b, n, heads, d // heads).transpose(1, 2)  # (B, H, T, dh)


def _merge_heads(t: torch.Tensor) -> torch.Tensor:
    b, h, n, dh = t.shape
    return t.transpose(1, 2).reshape(b, n, h * dh)


class TwoStreamVisual:
    """Reads a frozen open_clip ``VisionTransformer``; holds no parameters of its own.

    A plain object rather than an ``nn.Module`` so the tower is registered only once (under
    the owning model's ``clip``) and never appears twice in a state dict.
    """

    def __init__(self, visual: nn.Module, feature_layers: list[int], graph_layers: list[int], vv_start: int):
        self.visual = visual
        self.depth = len(visual.transformer.resblocks)
        self.feature_layers = list(feature_layers)
        self.graph_layers = list(graph_layers)
        self.vv_start = vv_start
        if max(self.feature_layers + self.graph_layers) > self.depth or vv_start > min(self.feature_layers):
            raise ValueError("layer indices must be within the tower and feature layers >= vv_start")

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual._embeds(images)  # conv1 + CLS + positional embedding + ln_pre

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.visual.ln_post(tokens) @ self.visual.proj, dim=-1)

    @staticmethod
    def _graph_qkv(blk: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Q and K of a graph layer in fp32 (the island), V in the autocast dtype; split heads."""
        attn: nn.MultiheadAttention = blk.attn
        d = attn.embed_dim
        w, b = attn.in_proj_weight, attn.in_proj_bias
        with torch.autocast(x.device.type, enabled=False):
            ln = blk.ln_1
            h32 = F.layer_norm(x.float(), ln.normalized_shape, ln.weight.float(), ln.bias.float(), ln.eps)
            qk = F.linear(h32, w[: 2 * d].float(), None if b is None else b[: 2 * d].float())
        v = F.linear(blk.ln_1(x), w[2 * d :], None if b is None else b[2 * d :])
        q, k = qk.chunk(2, dim=-1)
        return tuple(_split_heads(t, attn.num_heads) for t in (q, k, v))  # type: ignore[return-value]

    def __call__(
        self, images: torch.Tensor, graph_fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> VisualFeatures:
        x = self.embed(images)
        y: torch.Tensor | None = None
        feats: list[torch.Tensor] = []
        graph_out: list[torch.Tensor] = []
        for idx, blk in enumerate(self.visual.transformer.resblocks, start=1):
            attn: nn.MultiheadAttention = blk.attn
            # After the last block only the main stream's CLS token is used (for g), so the
            # last block computes the attention output and MLP for that one query.
            last = idx == self.depth
            if idx in self.graph_layers:
                # fp32 island: ln_1, the Q and K projections, Q·Kᵀ, the softmax and graph_fn
                # (relation graph, k-means, structural entropy) run in fp32 whatever autocast
                # says. In bf16 the logits alone carry ~3 significant digits, and the entropy's
                # module cut subtracts nearly equal volumes, so the entropy map would follow
                # rounding noise. Projecting Q and K in fp32 too (not only the product) took the
                # tiny model's 2d map from 0.913 to 0.954 correlation with fp32. Only V and the
                # attention output (probs·V) stay in the stream's dtype.
                q, k, v = self._graph_qkv(blk, x)
                with torch.autocast(q.device.type, enabled=False):
                    scale = q.shape[-1] ** -0.5
                    probs = torch.softmax((q.float() @ k.float().transpose(-2, -1)) * scale, dim=-1)
                    head_mean = probs.mean(dim=1)
                    graph_out.append(graph_fn(head_mean) if graph_fn is not None else head_mean)
                out = probs[:, :, :1].to(v.dtype) @ v if last else probs.to(v.dtype) @ v
                del probs
            else:
                h = blk.ln_1(x)
                q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
                q, k, v = (_split_heads(t, attn.num_heads) for t in (q, k, v))
                out = F.scaled_dot_product_attention(q[:, :, :1] if last else q, k, v)
            if idx >= self.vv_start:
                vv = F.scaled_dot_product_attention(v, v, v)
                vv = blk.ls_1(attn.out_proj(_merge_heads(vv)))
                y = (x if y is None else y) + vv
            x = (x[:, :1] if last else x) + blk.ls_1(attn.out_proj(_merge_heads(out)))
            x = x + blk.ls_2(blk.mlp(blk.ln_2(x)))
            if idx in self.feature_layers:
                feats.append(self.project(y[:, 1:]))
        g = self.project(x[:, 0])
        return VisualFeatures(global_embedding=g, patch_features=torch.stack(feats, dim=1), graph_outputs=graph_out)
