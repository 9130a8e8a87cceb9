"""Content keys that identify a training and an evaluation, so a re-run finds its results.

``train_key`` hashes everything that determines the trained weights: the model-core
sections of params.yaml, the training data version, and the backbone *as it will actually
be loaded* (weights file hash, or the random-init fallback), so installing real weights
later is a change even though params.yaml is not. ``checkpoint_key`` hashes a trained
checkpoint; ``evaluation_settings_key`` the evaluation options that change the numbers.
The pipeline uses them as cache inputs and in folder names (``runs/<dataset>-<key>/``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import entroad
from entroad.backbone import file_sha256, resolve_weights
from entroad.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from entroad.config import Params
from entroad.errors import WeightsNotFoundError

KEY_LENGTH = 16
# Library code whose change changes trained weights / evaluation numbers (relative to entroad/).
TRAIN_CODE = (
    "backbone.py", "checkpoint.py", "entropy.py", "losses.py", "model.py", "prompts.py", "routing.py",
    "train.py", "vision.py", "data/manifest.py", "data/torch_dataset.py", "model_configs",
)
EVAL_CODE = (
    "evaluation/metrics.py", "evaluation/pixel_metrics.py", "evaluation/results.py", "evaluation/accumulate.py",
    "evaluation/engine.py",
)
# Evaluation options that do not change any number (speed / bookkeeping only).
_EVAL_NEUTRAL = {"targets", "suites", "num_workers", "batch_size"}


def digest(obj: Any, length: int = KEY_LENGTH) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


def code_key(parts: tuple[str, ...]) -> str:
    """Hash of the named library files (folders: every file inside), so a code change is a change."""
    base = Path(entroad.__file__).resolve().parent
    h = hashlib.sha256()
    for part in parts:
        p = base / part
        files = sorted(f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts) if p.is_dir() else [p]
        for f in files:
            if f.is_file():
                h.update(f.relative_to(base).as_posix().encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:KEY_LENGTH]


def backbone_identity(params: Params) -> str:
    """What backbone ``EntroAD.build(params)`` will load, without loading it."""
    b = params.backbone
    try:
        path = resolve_weights(b.name, b.pretrained, b.cache_dir)
    except WeightsNotFoundError:
        if not b.random_init_fallback:
            raise
        return f"random-init-fallback:{b.fallback_name}@{b.fallback_image_size}:seed{b.init_seed}"
    if path is None:
        return f"random-init:{b.name}@{b.image_size}:seed{b.init_seed}"
    return f"{b.name}@{b.image_size}:sha256:{file_sha256(path)}"


def train_key(params: Params, data_version: str) -> str:
    d = params.resolved()
    backbone = {k: v for k, v in d["backbone"].items() if k not in {"device", "cache_dir"}}
    return digest({
        "backbone": backbone,
        "backbone_identity": backbone_identity(params),
        "model": d["model"],
        "train": {k: v for k, v in d["train"].items() if k not in {"num_workers", "keep_checkpoints"}},
        "data_version": data_version,
        "code": code_key(TRAIN_CODE),
    })


def checkpoint_key(model_dir: str | Path) -> str:
    """Hash of a checkpoint's weights and options (two identical trainings share it)."""
    folder = Path(model_dir)
    h = hashlib.sha256((folder / WEIGHTS_FILE).read_bytes())
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    h.update(json.dumps({"model": cfg.get("model"), "backbone": cfg.get("backbone", {}).get("weights_sha256")},
                        sort_keys=True).encode())
    return h.hexdigest()[:KEY_LENGTH]


def evaluation_settings_key(params: Params) -> str:
    ev = {k: v for k, v in params.evaluation.model_dump(mode="json").items() if k not in _EVAL_NEUTRAL}
    return digest({"evaluation": ev, "precision": params.backbone.precision, "code": code_key(EVAL_CODE + TRAIN_CODE)})
