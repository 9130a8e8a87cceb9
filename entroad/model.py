"""The EntroAD model (METHOD.md §1-6): ``EntroAD(backbone, cfg)(images) -> EntroADOutput``.

Data flow for a batch of images (B, 3, S, S), patch grid G×G = N, L feature layers:

1. frozen two-stream pass → global embedding ``g``, patch features ``F`` (B, L, N, C) and
   one standardised entropy map per graph layer, averaged into ``z`` (B, N);
2. router: ``z`` → diffuse weight ``r``; per-path adapters give routed features ``F̃`` and
   entropy-weighted routed tokens ``t_loc``, ``t_dif``;
3. text: learnable prompts ``Tᴬ`` (one text pass per batch) shifted per image and path by
   the routed tokens; frozen prior ensemble ``T⁰``;
4. per path/branch patch probabilities, confidence ``c = (1 − H₂(pᴬ))^γ`` and fusion
   ``p = c·pᴬ + (1 − c)·p⁰``; the same two branches on ``g`` give ``p_glob``;
5. map = layer mean → bilinear upsample → Gaussian σ; score = α·p_glob + (1 − α)·max(map).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from entroad.backbone import Backbone, BackboneInfo, load_backbone, resolve_device, resolve_dtype
from entroad.config import ModelConfig, Params
from entroad.entropy import patch_entropy
from entroad.errors import ConfigError, InputError
from entroad.prompts import PromptLearner, TextParts, prior_text_embeddings
from entroad.rng import seeded_init
from entroad.routing import ResidualMLP, Router, _inverse_softplus, routed_tokens
from entroad.vision import TwoStreamVisual

log = logging.getLogger(__name__)

LEARNABLE_PREFIXES = ("prompts.", "router.", "adapters.", "conditioners.", "gamma_raw")


@dataclass
class EntroADOutput:
    """Everything the model says about a batch.

    Maps named ``*_map`` of patch-level quantities are at grid resolution (B, G, G); pixel
    maps (``anomaly_map`` and ``branch_maps``) are at input resolution (B, S, S).
    """

    score: torch.Tensor  # (B,) image anomaly score in [0, 1]
    anomaly_map: torch.Tensor  # (B, S, S) fused pixel anomaly probability
    entropy_map: torch.Tensor  # (B, G, G) standardised structural-entropy density z
    routing_map: torch.Tensor  # (B, G, G) diffuse-path weight r
    confidence_map: torch.Tensor  # (B, G, G) adapted-branch confidence c (layer mean)
    branch_maps: dict[str, torch.Tensor]  # adapted / prior / localised / diffuse, (B, S, S)
    image_probs: dict[str, torch.Tensor]  # fused / adapted / prior global probabilities, (B,)
    # Patch-level internals used by the loss (B, L, N): fused / adapted / prior.
    layer_probs: dict[str, torch.Tensor]
    layer_confidence: torch.Tensor  # (B, L, N)
    image_confidence: torch.Tensor  # (B,)
    routing: torch.Tensor  # (B, N)

    def detach_cpu(self) -> EntroADOutput:
        def conv(v: Any) -> Any:
            if isinstance(v, torch.Tensor):
                return v.detach().float().cpu()
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            return v

        return EntroADOutput(**{f.name: conv(getattr(self, f.name)) for f in fields(self)})


def resolve_layers(cfg: ModelConfig, depth: int) -> tuple[list[int], list[int], int]:
    """Resolve ``auto`` layer options for a tower of ``depth`` blocks and validate them."""
    if cfg.feature_layers == "auto":
        feature = sorted({max(1, round(depth * q / 4)) for q in (1, 2, 3, 4)})
    else:
        feature = list(cfg.feature_layers)
    graph = feature if cfg.graph_layers == "auto" else list(cfg.graph_layers)
    vv = max(1, round(6 * depth / 24)) if cfg.vv_start == "auto" else cfg.vv_start
    for key, layers in (("model.feature_layers", feature), ("model.graph_layers", graph)):
        bad = [i for i in layers if i > depth]
        if bad:
            raise ConfigError(f"{key}: {bad} exceed the backbone depth ({depth} blocks)")
    if not 1 <= vv <= min(feature):
        raise ConfigError(
            f"model.vv_start: {vv} must be between 1 and the first feature layer ({min(feature)}): "
            "feature layers are read from the value-value stream"
        )
    return feature, graph, vv


def upsample_blur_matrix(grid: int, size: int, sigma: float) -> torch.Tensor:
    """(size, grid) matrix ``A`` with ``A @ M @ Aᵀ`` = bilinear upsampling of a (grid, grid)
    map to (size, size) followed by a Gaussian blur of ``sigma`` pixels.

    Both steps are linear and separable, so their product is one small matrix per axis:
    two matmuls of O(S·G² + S²·G) replace an interpolation plus two 1-D convolutions at full
    resolution (O(S²·r)), which was the largest non-backbone cost of the forward. The blur
    matches scipy's ``gaussian_filter`` (AnomalyCLIP's choice): radius ``int(4σ + 0.5)``,
    borders ``reflect`` (edge sample repeated: ``… b a | a b …``).
    """
    eye = torch.eye(grid, dtype=torch.float64)[:, None, :]  # (G, 1, G): one basis map per row
    up = F.interpolate(eye, size=size, mode="linear", align_corners=False)[:, 0, :].T  # (S, G)
    if sigma <= 0:
        return up.float()
    radius = min(int(4 * sigma + 0.5), size - 1)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    idx = torch.arange(size)[:, None] + torch.arange(-radius, radius + 1)[None, :]  # (S, 2r+1)
    idx = torch.where(idx < 0, -idx - 1, idx)
    idx = torch.where(idx >= size, 2 * size - 1 - idx, idx)
    blur = torch.zeros(size, size, dtype=torch.float64).scatter_add_(1, idx, kernel.expand(size, -1).contiguous())
    return (blur @ up).float()


def binary_entropy_bits(p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    p = p.clamp(eps, 1 - eps)
    return -(p * torch.log2(p) + (1 - p) * torch.log2(1 - p))


class EntroAD(nn.Module):
    """Zero-shot anomaly detector on a frozen open_clip ViT (see module docstring)."""

    def __init__(self, backbone: Backbone, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone_info: BackboneInfo = backbone.info
        self.tokenizer = backbone.tokenizer
        self.clip = backbone.model.eval().requires_grad_(False)
        visual = self.clip.visual
        depth = len(visual.transformer.resblocks)
        self.feature_layers, self.graph_layers, self.vv_start = resolve_layers(cfg, depth)
        self.visual = TwoStreamVisual(visual, self.feature_layers, self.graph_layers, self.vv_start)
        self.text = TextParts.of(self.clip)
        if cfg.deep_prompt_depth > self.text.depth:
            raise ConfigError(
                f"model.deep_prompt_depth: {cfg.deep_prompt_depth} exceeds the text tower depth ({self.text.depth})"
            )
        dim = visual.proj.shape[1]
        self.embed_dim = dim
        self.prompts = PromptLearner(
            self.text, self.tokenizer, cfg.prompt_length, cfg.deep_prompt_depth, cfg.deep_prompt_tokens
        )
        self.router = Router(cfg.routing, cfg.routing_ratio, cfg.routing_tau_init)
        self.adapters = nn.ModuleDict(
            {b: ResidualMLP(dim, cfg.adapter_reduction) for b in ("loc", "dif")}
        )
        # Deviation (METHOD §5 leaves Δ_b's shape open): Δ_b gives a per-image, per-layer
        # shift of the [normal, abnormal] text embeddings (2·C outputs), since a shift shared
        # by both states would largely cancel in their softmax contrast.
        self.conditioners = nn.ModuleDict(
            {b: ResidualMLP(dim, cfg.adapter_reduction, 2 * dim) for b in ("loc", "dif")}
        )
        self.gamma_raw = nn.Parameter(torch.tensor(_inverse_softplus(cfg.confidence_gamma_init)))
        self.register_buffer(
            "prior_text", prior_text_embeddings(self.text, self.tokenizer, cfg.prior_object), persistent=False
        )
        g, size = self.grid, self.image_size
        self.register_buffer("pixel_matrix", upsample_blur_matrix(g, size, cfg.sigma), persistent=False)
        self._class_prior: dict[str, torch.Tensor] = {}
        self._text_cache: tuple[tuple, torch.Tensor] | None = None
        self.compute_dtype = torch.float32
        self.checkpoint_config: dict[str, Any] | None = None  # set when loaded from a checkpoint

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, params: Params, device: str | torch.device | None = None) -> EntroAD:
        """Backbone per ``params.backbone`` (with its fallback rule) + fresh learnable parts.

        Learnable tensors are initialised from ``train.seed`` (a private generator, safe in
        threads) so two builds are identical.
        """
        backbone = load_backbone(params.backbone)
        with seeded_init(params.train.seed):
            model = cls(backbone, params.model)
        dev = torch.device(device) if device is not None else resolve_device(params.backbone.device)
        return model.to_device(dev, resolve_dtype(params.backbone.precision, dev))

    def to_device(self, device: torch.device, dtype: torch.dtype = torch.float32) -> EntroAD:
        """Move to ``device``; ``dtype`` is the autocast dtype of the forward (weights stay fp32)."""
        self.to(device)
        self.compute_dtype = dtype
        return self

    @property
    def device(self) -> torch.device:
        return self.gamma_raw.device

    @property
    def image_size(self) -> int:
        return self.backbone_info.image_size

    @property
    def grid(self) -> int:
        return self.backbone_info.grid

    def train(self, mode: bool = True) -> EntroAD:
        super().train(mode)
        self.clip.eval()  # the backbone never leaves eval mode (no dropout / patch dropout)
        return self

    def learnable_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if k.startswith(LEARNABLE_PREFIXES)}

    def learnable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(k, p) for k, p in self.named_parameters() if k.startswith(LEARNABLE_PREFIXES)]

    def count_learnable(self) -> int:
        return sum(p.numel() for _, p in self.learnable_parameters())

    @property
    def gamma(self) -> torch.Tensor:
        return F.softplus(self.gamma_raw)

    # ------------------------------------------------------------------ text side
    def adapted_text(self) -> torch.Tensor:
        """``Tᴬ`` (2, C). One text pass per batch; reused across batches when no grad is
        recorded and the prompt tensors have not changed (evaluation)."""
        if torch.is_grad_enabled():
            self._text_cache = None
            return self.prompts(self.text)
        key = tuple(p._version for p in self.prompts.parameters()) + (self.device, torch.is_autocast_enabled())
        if self._text_cache is None or self._text_cache[0] != key:
            self._text_cache = (key, self.prompts(self.text))
        return self._text_cache[1]

    def prior_for(self, class_names: Sequence[str] | None, batch: int) -> torch.Tensor:
        """``T⁰`` as (2, C), or (B, 2, C) with class-specific object words."""
        if not (self.cfg.use_class_names and class_names):
            return self.prior_text
        if len(class_names) != batch:
            raise InputError(f"got {len(class_names)} class names for a batch of {batch} images")
        for name in set(class_names) - set(self._class_prior):
            self._class_prior[name] = prior_text_embeddings(self.text, self.tokenizer, name.replace("_", " "))
        return torch.stack([self._class_prior[n].to(self.device) for n in class_names])

    # ------------------------------------------------------------------ forward
    def _confidence(self, p: torch.Tensor) -> torch.Tensor:
        if not self.cfg.confidence:
            return torch.full_like(p, 0.5)
        return (1.0 - binary_entropy_bits(p)).clamp_min(1e-6) ** self.gamma

    def _fuse(self, p_adapted: torch.Tensor, p_prior: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.cfg.branches == "adapted":
            return p_adapted
        if self.cfg.branches == "prior":
            return p_prior
        return c * p_adapted + (1.0 - c) * p_prior

    def _to_pixels(self, *probs: torch.Tensor) -> list[torch.Tensor]:
        """(B, L, N) patch probabilities -> (B, S, S) maps: layer mean, bilinear, Gaussian σ
        (one precomputed matrix per axis, see :func:`upsample_blur_matrix`)."""
        b, g, s = probs[0].shape[0], self.grid, self.image_size
        m = torch.stack([p.mean(1) for p in probs]).view(-1, g, g)
        a = self.pixel_matrix
        m = a @ m @ a.T
        return list(m.view(len(probs), b, s, s).unbind(0))

    def _check_images(self, images: torch.Tensor) -> None:
        s = self.image_size
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2:] != (s, s):
            raise InputError(f"expected images of shape (B, 3, {s}, {s}), got {tuple(images.shape)}")
        if not torch.isfinite(images).all():
            raise InputError("images contain NaN or infinite values")

    def forward(self, images: torch.Tensor, class_names: Sequence[str] | None = None) -> EntroADOutput:
        self._check_images(images)
        cfg, b, g = self.cfg, images.shape[0], self.grid
        # Precision: with a bf16/fp16 compute dtype the frozen towers run under autocast on
        # any device (CUDA or CPU); the graph layers' attention probabilities and the entropy
        # stay fp32 inside that (fp32 island, see vision.py / entropy.py). fp32 opens no
        # autocast context, so a caller's own autocast still applies.
        mixed = self.compute_dtype != torch.float32
        amp = torch.autocast(self.device.type, dtype=self.compute_dtype) if mixed else contextlib.nullcontext()
        with amp:
            vf = self.visual(
                images.to(self.device),
                lambda a: patch_entropy(a, cfg.entropy, cfg.modules, cfg.kmeans_iters, cfg.kmeans_seed, cfg.graph_knn),
            )
            text_a = self.adapted_text().float()
        # Heads run in fp32: they are tiny, and probabilities near 0/1 need the precision.
        feats = vf.patch_features.float()  # (B, L, N, C)
        glob = vf.global_embedding.float()  # (B, C)
        z = torch.stack(vf.graph_outputs).mean(0).float()  # (B, N)
        r = self.router(z)
        rr = r[:, None, :, None]

        routed = (1 - rr) * (feats + self.adapters["loc"](feats)) + rr * (feats + self.adapters["dif"](feats))
        # Deviation: F̃ is renormalised (METHOD mixes without it) so that ⟨F̃, T⟩/0.07 sees
        # unit vectors, as CLIP's temperature assumes.
        routed = F.normalize(routed, dim=-1)
        t_loc, t_dif = routed_tokens(feats, r)
        shift_loc = self.conditioners["loc"](t_loc).view(b, -1, 2, self.embed_dim)
        shift_dif = self.conditioners["dif"](t_dif).view(b, -1, 2, self.embed_dim)
        text_loc = F.normalize(text_a + shift_loc, dim=-1)  # (B, L, 2, C)
        text_dif = F.normalize(text_a + shift_dif, dim=-1)
        temp = cfg.temperature

        def abnormal_prob(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return torch.softmax(torch.einsum("...nc,...sc->...ns", x, t) / temp, dim=-1)[..., 1]

        p_loc = abnormal_prob(routed, text_loc)  # (B, L, N)
        p_dif = abnormal_prob(routed, text_dif)
        r_l = r[:, None, :]
        p_adapted = (1 - r_l) * p_loc + r_l * p_dif
        prior = self.prior_for(class_names, b).float()
        prior_l = prior if prior.ndim == 2 else prior[:, None]  # broadcast over layers
        p_prior = abnormal_prob(feats, prior_l)
        conf = self._confidence(p_adapted)
        p_fused = self._fuse(p_adapted, p_prior, conf)

        # Image level. Deviation: METHOD conditions on "the mean of the two routed tokens";
        # there is no third Δ for it, so the shift is the mean of the two paths' shifts
        # (over layers too), which keeps both paths' conditioning.
        text_g = F.normalize(text_a + 0.5 * (shift_loc + shift_dif).mean(1), dim=-1)  # (B, 2, C)
        pg_adapted = abnormal_prob(glob[:, None], text_g)[:, 0]
        pg_prior = abnormal_prob(glob[:, None], prior if prior.ndim == 3 else prior[None])[:, 0]
        conf_g = self._confidence(pg_adapted)
        pg_fused = self._fuse(pg_adapted, pg_prior, conf_g)

        anomaly_map, map_adapted, map_prior, map_loc, map_dif = self._to_pixels(p_fused, p_adapted, p_prior, p_loc, p_dif)
        score = cfg.alpha * pg_fused + (1 - cfg.alpha) * anomaly_map.flatten(1).amax(1)
        return EntroADOutput(
            score=score,
            anomaly_map=anomaly_map,
            entropy_map=z.view(b, g, g),
            routing_map=r.view(b, g, g),
            confidence_map=conf.mean(1).view(b, g, g),
            branch_maps={"adapted": map_adapted, "prior": map_prior, "localised": map_loc, "diffuse": map_dif},
            image_probs={"fused": pg_fused, "adapted": pg_adapted, "prior": pg_prior},
            layer_probs={"fused": p_fused, "adapted": p_adapted, "prior": p_prior},
            layer_confidence=conf,
            image_confidence=conf_g,
            routing=r,
        )

    @torch.no_grad()
    def predict(self, images: torch.Tensor, class_names: Sequence[str] | None = None) -> EntroADOutput:
        """Inference: eval mode, no autograd; returns tensors on the model's device."""
        was_training = self.training
        self.eval()
        try:
            return self(images, class_names)
        finally:
            self.train(was_training)
