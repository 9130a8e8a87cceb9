"""METHOD §5 text side against open_clip's own text forward: the frozen prior ensemble T⁰
and the learnable prompts Tᴬ with deep tokens replacing positions 1..n in blocks 2..depth."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from entroad.prompts import ABNORMAL_STATES, NORMAL_STATES, TEMPLATES
from tests.model.conftest import make_model


def test_prior_ensemble_is_the_normalised_mean_of_normalised_prompts(tiny_backbone):
    model = make_model(tiny_backbone)
    clip, tok = model.clip, model.tokenizer
    rows = []
    for states in (NORMAL_STATES, ABNORMAL_STATES):  # index 0 normal, 1 abnormal
        texts = [t.format(s.format("object")) for s in states for t in TEMPLATES]
        emb = clip.encode_text(tok(texts), normalize=True)
        rows.append(F.normalize(emb.mean(0), dim=-1))
    assert torch.allclose(model.prior_text, torch.stack(rows), atol=1e-5)


@torch.no_grad()
def test_learnable_prompts_with_deep_tokens_match_a_full_length_reference(tiny_backbone):
    model = make_model(tiny_backbone, deep_prompt_depth=5, deep_prompt_tokens=3, prompt_length=6)
    clip, learner = model.clip, model.prompts
    tokens = model.tokenizer(["X X X X X X object.", "X X X X X X damaged object."])
    x = clip.token_embedding(tokens).clone()
    x[0, 1:7] = learner.ctx_normal
    x[1, 1:7] = learner.ctx_abnormal
    x = x + clip.positional_embedding
    for i, blk in enumerate(clip.transformer.resblocks):
        if 1 <= i <= 4:  # inputs of text blocks 2..5 (depth 5): positions 1..3 replaced
            x[:, 1:4] = learner.deep[i - 1]
        x = blk(x, attn_mask=clip.attn_mask)
    x = clip.ln_final(x)
    pooled = x[torch.arange(2), tokens.argmax(-1)] @ clip.text_projection
    ref = F.normalize(pooled, dim=-1)
    assert learner.deep.shape == (4, 3, clip.token_embedding.weight.shape[1])
    assert torch.allclose(learner(model.text), ref, atol=1e-5)
