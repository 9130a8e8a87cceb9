"""Text side: frozen prior prompt ensemble and learnable object-agnostic prompts (§5).

Both run open_clip's own frozen text transformer. Sequences are cut right after their
end-of-text token: with the causal mask, later positions cannot influence the pooled EOT
feature, so the result is identical to the full 77-token pass at a fraction of the cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from open_clip.transformer import text_global_pool
from torch import nn

# WinCLIP-style state words (object-agnostic) and templates.
NORMAL_STATES = (
    "{}",
    "flawless {}",
    "perfect {}",
    "unblemished {}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
)
ABNORMAL_STATES = ("damaged {}", "broken {}", "{} with flaw", "{} with defect", "{} with damage")
TEMPLATES = (
    "a bad photo of a {}.",
    "a low resolution photo of the {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a bright photo of a {}.",
    "a dark photo of the {}.",
    "a photo of my {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a photo of one {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "a low resolution photo of a {}.",
    "a photo of a large {}.",
    "a blurry photo of a {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a photo of the small {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "a dark photo of a {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "this is the {} in the scene.",
    "this is one {} in the scene.",
)


@dataclass
class TextParts:
    """The frozen text tower of an open_clip CLIP / CustomTextCLIP, under uniform names."""

    token_embedding: nn.Embedding
    positional_embedding: torch.Tensor
    blocks: nn.ModuleList
    ln_final: nn.Module
    projection: torch.Tensor | nn.Module | None
    attn_mask: torch.Tensor | None
    pool_type: str
    eos_id: int | None

    @classmethod
    def of(cls, clip: nn.Module) -> TextParts:
        src = clip if hasattr(clip, "token_embedding") else clip.text
        return cls(
            token_embedding=src.token_embedding,
            positional_embedding=src.positional_embedding,
            blocks=src.transformer.resblocks,
            ln_final=src.ln_final,
            projection=getattr(src, "text_projection", None),
            attn_mask=getattr(src, "attn_mask", None),
            pool_type=getattr(clip, "text_pool_type", getattr(src, "pool_type", "argmax")),
            eos_id=getattr(clip, "text_eos_id", getattr(src, "eos_id", None)),
        )

    @property
    def width(self) -> int:
        return self.token_embedding.weight.shape[1]

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def eot_index(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.pool_type == "eos" and self.eos_id is not None:
            return (tokens == self.eos_id).int().argmax(-1)
        return tokens.argmax(-1)

    def encode(
        self,
        tokens: torch.Tensor,
        embeddings: torch.Tensor | None = None,
        deep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encode (P, L) token ids -> (P, C) L2-normalised embeddings.

        ``embeddings`` replaces the token embeddings (learnable context); ``deep`` (D, n, W)
        replaces positions 1..n of the input of text blocks 2..D+1 (AnomalyCLIP's compound
        prompts).
        """
        length = int(self.eot_index(tokens).max()) + 1
        tokens = tokens[:, :length]
        x = self.token_embedding(tokens) if embeddings is None else embeddings[:, :length]
        x = x + self.positional_embedding[:length].to(x.dtype)
        mask = self.attn_mask[:length, :length].to(x.dtype) if self.attn_mask is not None else None
        for i, blk in enumerate(self.blocks):
            if deep is not None and 1 <= i <= deep.shape[0]:
                n = deep.shape[1]
                x = torch.cat([x[:, :1], deep[i - 1].to(x.dtype).expand(x.shape[0], -1, -1), x[:, 1 + n :]], dim=1)
            x = blk(x, attn_mask=mask)
        x = self.ln_final(x)
        pooled = text_global_pool(x, tokens, self.pool_type, eos_token_id=self.eos_id)
        if isinstance(self.projection, nn.Module):
            pooled = self.projection(pooled)
        elif self.projection is not None:
            pooled = pooled @ self.projection
        return F.normalize(pooled, dim=-1)


@torch.no_grad()
def prior_text_embeddings(parts: TextParts, tokenizer, obj: str = "object") -> torch.Tensor:
    """Frozen prior branch ``T⁰`` (2, C): mean of the normalised ensemble per state."""
    out = []
    device = parts.token_embedding.weight.device
    for states in (NORMAL_STATES, ABNORMAL_STATES):
        texts = [t.format(s.format(obj)) for s in states for t in TEMPLATES]
        emb = parts.encode(tokenizer(texts).to(device))
        out.append(F.normalize(emb.mean(0), dim=-1))
    return torch.stack(out)


class PromptLearner(nn.Module):
    """Adapted branch ``Tᴬ``: ``"[V1..VM] object."`` / ``"[W1..WM] damaged object."``.

    Learnable: the two context sequences (M tokens each, as AnomalyCLIP) and the deep text
    tokens shared by both prompts, which replace positions 1..n in text blocks 2..depth.
    """

    def __init__(self, parts: TextParts, tokenizer, length: int = 12, depth: int = 9, deep_tokens: int = 4):
        super().__init__()
        if depth > parts.depth:
            raise ValueError(f"deep_prompt_depth {depth} exceeds the text tower depth {parts.depth}")
        if deep_tokens > length:
            raise ValueError("deep_prompt_tokens must not exceed prompt_length")
        width = parts.width
        placeholder = " ".join(["X"] * length)
        tokens = tokenizer([f"{placeholder} object.", f"{placeholder} damaged object."])
        self.register_buffer("tokens", tokens, persistent=False)
        self.length = length
        # AnomalyCLIP initialises prompt vectors with N(0, 0.02).
        self.ctx_normal = nn.Parameter(torch.randn(length, width) * 0.02)
        self.ctx_abnormal = nn.Parameter(torch.randn(length, width) * 0.02)
        self.deep = nn.Parameter(torch.randn(max(depth - 1, 0), deep_tokens, width) * 0.02)

    def forward(self, parts: TextParts) -> torch.Tensor:
        """(2, C) normalised [normal, abnormal] embeddings; one text pass per call."""
        tokens = self.tokens
        emb = parts.token_embedding(tokens)
        ctx = torch.stack([self.ctx_normal, self.ctx_abnormal]).to(emb.dtype)
        emb = torch.cat([emb[:, :1], ctx, emb[:, 1 + self.length :]], dim=1)
        return parts.encode(tokens, embeddings=emb, deep=self.deep if self.deep.numel() else None)
