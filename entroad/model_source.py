"""Where a model comes from: a checkpoint folder or an MLflow URI (``models:/entroad@champion``),
and the ablation variants built from it (``--ablate entropy=none,routing=none``).

Shared by evaluation, site prediction and the flows.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from entroad.backbone import resolve_device, resolve_dtype
from entroad.checkpoint import CONFIG_FILE, WEIGHTS_FILE, is_checkpoint, load_checkpoint
from entroad.config import Params, load_params
from entroad.errors import CheckpointError, ConfigError
from entroad.tracking.store import connect

BASE_VARIANT = "full"  # the model as trained; ablation variants get their own names

_MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/", "s3://", "gs://", "file://", "dbfs:/", "http://", "https://")


def is_mlflow_uri(source: str) -> bool:
    return str(source).startswith(_MLFLOW_SCHEMES)


def find_checkpoint_dir(root: Path) -> Path:
    """The folder holding ``weights.safetensors`` + ``config.json`` anywhere under ``root``
    (a folder named ``checkpoint`` wins when there are several)."""
    if is_checkpoint(root):
        return root
    hits = sorted({p.parent for p in root.rglob(WEIGHTS_FILE) if (p.parent / CONFIG_FILE).is_file()})
    if not hits:
        raise CheckpointError(f"no EntroAD checkpoint ({WEIGHTS_FILE} + {CONFIG_FILE}) under {root}")
    named = [h for h in hits if h.name == "checkpoint"]
    return (named or hits)[0]


def _connect_mlflow(params: Params | None) -> None:
    """Point MLflow's tracking and registry at the project's store (same rules as training)."""
    connect(params if params is not None else load_params(None))


MODEL_CACHE_DIR = Path("runs") / "models"  # MLflow models the pipeline downloaded, one folder per URI


def _local_folder(text: str) -> Path:
    p = Path(text).expanduser()
    if not p.exists():
        raise CheckpointError(
            f"{p}: no such checkpoint folder; pass the folder written by `entroad train` (…/model) "
            "or an MLflow URI such as models:/entroad@champion"
        )
    return find_checkpoint_dir(p)


def _download(uri: str, dst: Path, params: Params | None) -> Path:
    """Download the MLflow artifacts of ``uri`` into ``dst``; returns the local folder."""
    try:
        import mlflow
    except ImportError:  # pragma: no cover - mlflow is a dependency
        raise CheckpointError("MLflow URIs need the mlflow package (pip install mlflow)") from None
    # MLflow's per-file download bar (~90 files of a pyfunc model) would drown our own output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    _connect_mlflow(params)
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    except Exception as e:  # mlflow raises many types (MlflowException, OSError, ...)
        raise CheckpointError(
            f"cannot download {uri} from MLflow at {mlflow.get_tracking_uri()}: {str(e).rstrip('.')}. "
            "Check the model name/alias (`entroad models` lists them) or set MLFLOW_TRACKING_URI"
        ) from None


_ALIAS_URI = re.compile(r"models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)")


def _pin_alias(uri: str, params: Params | None) -> str:
    """``models:/NAME@ALIAS`` -> ``models:/NAME/VERSION`` (the version the alias names now)."""
    m = _ALIAS_URI.fullmatch(uri)
    if m is None:
        return uri
    from mlflow import MlflowClient

    _connect_mlflow(params)
    try:
        version = MlflowClient().get_model_version_by_alias(m["name"], m["alias"]).version
    except Exception as e:  # MlflowException for an unknown name/alias, connection errors
        raise CheckpointError(
            f"cannot resolve {uri}: {str(e).rstrip('.')}. `entroad models` lists the models and their aliases"
        ) from None
    return f"models:/{m['name']}/{version}"


@contextlib.contextmanager
def resolved_checkpoint(source: str | Path, params: Params | None = None) -> Iterator[Path]:
    """A local checkpoint folder for ``source``: a folder as is, an MLflow URI downloaded
    into a temporary folder (removed on exit)."""
    text = str(source)
    if not is_mlflow_uri(text):
        yield _local_folder(text)
        return
    tmp = Path(tempfile.mkdtemp(prefix="entroad-model-"))
    try:
        yield find_checkpoint_dir(_download(text, tmp, params))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cached_checkpoint(source: str | Path, params: Params | None = None, cache_dir: str | Path = MODEL_CACHE_DIR) -> Path:
    """A local checkpoint folder for ``source`` that outlives the call (the pipeline's cache
    keys hash its content): a folder as is, an MLflow URI downloaded once under ``cache_dir``."""
    text = str(source)
    if not is_mlflow_uri(text):
        return _local_folder(text)
    # an alias moves (promotion): cache under the version it names today, never the alias
    text = _pin_alias(text, params)
    dest = Path(cache_dir) / re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
    if not dest.exists():
        # into a temporary sibling first: an interrupted download is never taken for a model
        tmp = dest.with_name(dest.name + ".part")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            _download(text, tmp, params)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        os.replace(tmp, dest)
    return find_checkpoint_dir(dest)


def parse_ablations(spec: str | Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``"entropy=none,routing=none"`` -> one variant per item; ``+`` combines options in one
    variant (``"entropy=none+routing=none"``). Values are YAML scalars."""
    if not spec:
        return {}
    items = [s for part in ([spec] if isinstance(spec, str) else spec) for s in part.split(",") if s.strip()]
    variants: dict[str, dict[str, Any]] = {}
    for item in items:
        opts: dict[str, Any] = {}
        for kv in item.split("+"):
            if "=" not in kv:
                raise ConfigError(f"--ablate {item!r}: each option must look like key=value (e.g. entropy=none)")
            key, raw = (x.strip() for x in kv.split("=", 1))
            opts[key.removeprefix("model.")] = yaml.safe_load(raw) if raw else None
        name = "+".join(f"{k}={_fmt_value(v)}" for k, v in opts.items())
        if name in variants:
            raise ConfigError(f"--ablate: variant {name!r} is listed twice")
        variants[name] = opts
    return variants


def _fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    return str(v)


def load_models(
    checkpoint: Path,
    variants: Mapping[str, Mapping[str, Any]],
    params: Params,
    device: str | torch.device | None = None,
    weights: str | None = None,
) -> dict[str, Any]:
    """The full model and one model per ablation variant, on ``device``."""
    dev = torch.device(device) if device is not None else resolve_device(params.backbone.device)
    dtype = resolve_dtype(params.backbone.precision, dev)
    models = {}
    for name, overrides in [(BASE_VARIANT, {}), *variants.items()]:
        m = load_checkpoint(checkpoint, device=dev, overrides=dict(overrides) or None, weights=weights)
        m.to_device(dev, dtype)
        models[name] = m.eval()
    return models
