"""Entropy, routing and confidence maps on demand: predict stores only the anomaly overlay,
so the review page asks the model again for one image when a reviewer wants to see why."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from PIL import Image

from entroad.config import Params
from entroad.data.torch_dataset import image_to_tensor
from entroad.model_source import load_models, resolved_checkpoint
from entroad.review.images import png_bytes

KINDS = {"entropy": "entropy_map", "routing": "routing_map", "confidence": "confidence_map"}


class ModelMaps:
    """Loads the model on first use (seconds) and renders one patch-level map as a jet PNG
    at the image's size."""

    def __init__(self, source: str | Path, params: Params, device: str | None = None, model=None):
        self.source, self.params, self.device = str(source), params, device
        self._net = model  # an already loaded model, else loaded from ``source`` on first use
        self._lock = threading.Lock()

    def _model(self):
        with self._lock:
            if self._net is None:
                with resolved_checkpoint(self.source, self.params) as ckpt:
                    self._net = load_models(ckpt, {}, self.params, self.device or "cpu")["full"]
            return self._net

    def render(self, image: Image.Image, kind: str) -> bytes:
        import torch
        from matplotlib import colormaps

        net = self._model()
        info = net.backbone_info
        x = image_to_tensor(image.convert("RGB"), net.image_size, info.mean, info.std)[None].to(net.device)
        with torch.no_grad():
            grid = getattr(net.predict(x), KINDS[kind])[0].float().cpu().numpy()
        lo, hi = float(np.min(grid)), float(np.max(grid))
        norm = (grid - lo) / (hi - lo) if hi > lo else np.zeros_like(grid)
        rgb = (colormaps["jet"](norm)[..., :3] * 255).astype(np.uint8)
        return png_bytes(Image.fromarray(rgb).resize(image.size, Image.Resampling.NEAREST))
