"""Checkpoints: ``weights.safetensors`` (learnable tensors only) + ``config.json``.

Nothing is ever unpickled: tensors come from safetensors, everything else from JSON. The
config records the backbone identity (name, tag, size, weights SHA-256 or the hash of a
random-init state) and every model option, so loading rebuilds exactly the model that was
trained — or refuses with a clear error when the backbone found here is a different one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from entroad import __version__
from entroad.backbone import BackboneInfo, load_backbone, resolve_device, resolve_dtype
from entroad.config import BackboneConfig, ModelConfig
from entroad.errors import BackboneMismatchError, CheckpointError, ConfigError
from entroad.model import EntroAD

FORMAT = "entroad-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"


def is_checkpoint(path: str | Path) -> bool:
    p = Path(path)
    return (p / WEIGHTS_FILE).is_file() and (p / CONFIG_FILE).is_file()


def save_checkpoint(model: EntroAD, out_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the checkpoint folder atomically (temp folder, then rename)."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.learnable_state_dict().items()}
    save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT})
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "entroad_version": __version__,
        "backbone": model.backbone_info.to_json(),
        "model": model.cfg.model_dump(mode="json"),
        "resolved_layers": {
            "feature_layers": model.feature_layers,
            "graph_layers": model.graph_layers,
            "vv_start": model.vv_start,
        },
        "learnable": {"count": model.count_learnable(), "tensors": sorted(tensors)},
        **(extra or {}),
    }
    (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if out.exists():
        old = out.with_name(out.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)
    return out


def read_checkpoint_config(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not is_checkpoint(p):
        raise CheckpointError(
            f"{p} is not an EntroAD checkpoint (needs {WEIGHTS_FILE} and {CONFIG_FILE}); "
            "pass the folder written by `entroad train` (…/model) or an MLflow model URI"
        )
    try:
        cfg = json.loads((p / CONFIG_FILE).read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{p / CONFIG_FILE}: invalid JSON ({e})") from None
    if cfg.get("format") != FORMAT:
        raise CheckpointError(f"{p / CONFIG_FILE}: not an EntroAD checkpoint config (format={cfg.get('format')!r})")
    if cfg.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{p}: checkpoint format {cfg['format_version']} is newer than this entroad ({FORMAT_VERSION}); upgrade entroad"
        )
    for key in ("backbone", "model"):
        if key not in cfg:
            raise CheckpointError(f"{p / CONFIG_FILE}: missing {key!r}")
    return cfg


def _model_config(cfg: dict[str, Any], overrides: dict[str, Any] | None, where: Path) -> ModelConfig:
    data = dict(cfg["model"])
    for k, v in (overrides or {}).items():
        key = k.removeprefix("model.")
        if key not in ModelConfig.model_fields:
            raise ConfigError(f"override {k!r}: not a model option (options: {', '.join(ModelConfig.model_fields)})")
        data[key] = v
    try:
        return ModelConfig.model_validate(data)
    except ValidationError as e:
        raise CheckpointError(f"{where}: invalid model options: {e.errors()[0]['loc']}: {e.errors()[0]['msg']}") from None


def load_checkpoint(
    path: str | Path,
    device: str | torch.device | None = None,
    overrides: dict[str, Any] | None = None,
    weights: str | None = None,
) -> EntroAD:
    """Rebuild the trained model; ``overrides`` ({"entropy": "none"}) builds an ablation variant. ``weights`` points at the backbone file on this machine
    when it lives elsewhere than at training time (its SHA-256 must still match)."""
    p = Path(path)
    cfg = read_checkpoint_config(p)
    info = BackboneInfo.from_json(cfg["backbone"])
    bcfg = BackboneConfig(
        name=info.name,
        pretrained=weights or info.pretrained,
        image_size=info.image_size,
        init_seed=info.init_seed,
        random_init_fallback=False,
    )
    backbone = load_backbone(bcfg, allow_fallback=False)
    if backbone.info.weights_sha256 != info.weights_sha256:
        raise BackboneMismatchError(
            f"{p} was trained on {info.name} with weights {info.weights_sha256[:24]}…, but the backbone found "
            f"here has {backbone.info.weights_sha256[:24]}… ({backbone.info.weights_file or 'random init'}). "
            "Provide the original weights file (--weights PATH) or retrain."
        )
    backbone.info.fallback_reason = info.fallback_reason
    model = EntroAD(backbone, _model_config(cfg, overrides, p))
    try:
        state = load_file(str(p / WEIGHTS_FILE))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{p / WEIGHTS_FILE}: unreadable ({e})") from None
    expected = model.learnable_state_dict()
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    bad_shape = [k for k in set(expected) & set(state) if expected[k].shape != state[k].shape]
    if missing or unexpected or bad_shape:
        raise CheckpointError(
            f"{p}: weights do not match the model (missing {sorted(missing)[:3]}, unexpected "
            f"{sorted(unexpected)[:3]}, wrong shape {bad_shape[:3]})"
        )
    model.load_state_dict(state, strict=False)
    dev = torch.device(device) if device is not None else resolve_device("auto")
    model.to_device(dev, resolve_dtype("auto", dev))
    model.checkpoint_config = cfg
    model.eval()
    return model
