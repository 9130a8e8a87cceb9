"""The trained model as an MLflow **pyfunc** model: score images anywhere MLflow loads it.

    model = mlflow.pyfunc.load_model("models:/entroad@champion")
    model.predict(pd.DataFrame({"image": ["/data/part-001.png"]}))
    # -> DataFrame: score, map_max, map_mean, map_area

Input: a DataFrame with an ``image`` column (file paths readable where the model runs) and/or
an ``image_b64`` column (base64 of the image file's bytes, e.g. for a REST call to
``mlflow models serve``); per row the path wins when both are set. Params: ``map_stats``
(default true) adds anomaly-map statistics, ``batch_size`` (default 8).

What is logged (models-from-code: no pickled object): the checkpoint folder
(weights.safetensors + config.json) as the artifact ``checkpoint``, the ``entroad`` package
as ``code_paths``, pinned pip requirements, a signature and a small input example. Loading
needs the backbone weights the checkpoint was trained with on that machine (or none for the
random-init backbone); pass ``model_config={"weights": PATH, "device": "cuda"}`` to
``load_model`` when they live elsewhere than at training time.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

import entroad
from entroad.backbone import resolve_device
from entroad.checkpoint import load_checkpoint, read_checkpoint_config
from entroad.data.torch_dataset import image_to_tensor, read_rgb
from entroad.errors import InputError

log = logging.getLogger(__name__)

ARTIFACT_NAME = "checkpoint"
MODEL_NAME = "model"  # the logged model's name inside its run
ENTRY_FILE = "pyfunc_entry.py"  # models-from-code file that instantiates EntroADPyfunc
IMAGE_COL, B64_COL = "image", "image_b64"
MAP_THRESHOLD = 0.5  # map_area = share of pixels whose anomaly probability exceeds this
# Distributions the pyfunc needs at load time (pinned to the versions that logged it).
_REQUIREMENTS = (
    "mlflow", "torch", "torchvision", "open_clip_torch", "numpy", "pandas", "pillow",
    "safetensors", "pydantic", "pyyaml",
)


class EntroADPyfunc(mlflow.pyfunc.PythonModel):
    """Scores image files (paths or base64 bytes) with an EntroAD checkpoint."""

    def load_context(self, context) -> None:
        cfg = dict(getattr(context, "model_config", None) or {})
        device = resolve_device(str(cfg.get("device") or os.environ.get("ENTROAD_DEVICE") or "auto"))
        weights = cfg.get("weights") or os.environ.get("ENTROAD_BACKBONE_WEIGHTS") or None
        self.model = load_checkpoint(context.artifacts[ARTIFACT_NAME], device=device, weights=weights)
        info = self.model.backbone_info
        if info.random_init:
            log.warning("EntroAD pyfunc: random-init backbone %s - scores are not meaningful", info.name)

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        import torch

        params = params or {}
        map_stats = bool(params.get("map_stats", True))
        batch_size = max(1, int(params.get("batch_size", 8)))
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if IMAGE_COL not in frame.columns and B64_COL not in frame.columns:
            raise InputError(f"input needs an {IMAGE_COL!r} (path) or {B64_COL!r} (base64 bytes) column")
        info = self.model.backbone_info
        rows: list[dict[str, float]] = []
        for start in range(0, len(frame), batch_size):
            chunk = frame.iloc[start : start + batch_size]
            images = torch.stack([_load_row(row, self.model.image_size, info.mean, info.std) for _, row in chunk.iterrows()])
            out = self.model.predict(images.to(self.model.device))
            maps = out.anomaly_map.float().cpu().numpy()
            for score, amap in zip(out.score.float().cpu().numpy(), maps, strict=True):
                row = {"score": float(score)}
                if map_stats:
                    row.update(map_max=float(amap.max()), map_mean=float(amap.mean()),
                               map_area=float((amap > MAP_THRESHOLD).mean()))
                rows.append(row)
        columns = ["score", "map_max", "map_mean", "map_area"] if map_stats else ["score"]
        return pd.DataFrame(rows, columns=columns)


def _present(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _load_row(row: pd.Series, size: int, mean, std):
    """The image of one input row as a tensor; errors name the row (its index label)."""
    path, b64 = row.get(IMAGE_COL), row.get(B64_COL)
    if _present(path):
        return image_to_tensor(read_rgb(path), size, mean, std)
    if _present(b64):
        try:
            raw = base64.b64decode(b64, validate=True)
        except (ValueError, binascii.Error) as e:
            raise InputError(f"row {row.name}: {B64_COL} is not valid base64 ({e})") from None
        try:
            img = read_rgb(io.BytesIO(raw))
        except InputError:
            raise InputError(
                f"row {row.name}: {B64_COL} decodes to {len(raw)} bytes that are not a readable image "
                f"({_image_failure(raw)}); send the bytes of a PNG, JPEG or TIFF file, base64-encoded"
            ) from None
        return image_to_tensor(img, size, mean, std)
    raise InputError(f"row {row.name}: has neither {IMAGE_COL!r} nor {B64_COL!r}")


def _image_failure(raw: bytes) -> str:
    """Why Pillow cannot read ``raw``, without the in-memory buffer's repr in the text."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as img:
            img.load()
    except UnidentifiedImageError:
        return "not an image format Pillow knows"
    except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt data of a known format
        return str(e)
    return "unreadable image data"


def encode_image(path: str | Path) -> str:
    """Base64 of an image file, for the ``image_b64`` column."""
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def example_image_b64(size: int = 32) -> str:
    """A small grey PNG (the logged input example: self-contained, unlike a file path)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec(DataType.string, IMAGE_COL, required=False), ColSpec(DataType.string, B64_COL, required=False)])
    outputs = Schema([
        ColSpec(DataType.double, "score"),
        ColSpec(DataType.double, "map_max", required=False),
        ColSpec(DataType.double, "map_mean", required=False),
        ColSpec(DataType.double, "map_area", required=False),
    ])
    params = ParamSchema([ParamSpec("map_stats", DataType.boolean, True), ParamSpec("batch_size", DataType.long, 8)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def pip_requirements() -> list[str]:
    reqs = []
    for dist in _REQUIREMENTS:
        try:
            reqs.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            reqs.append(dist)
    return reqs


def entroad_code_path() -> str:
    return str(Path(entroad.__file__).resolve().parent)


def log_pyfunc_model(checkpoint_dir: str | Path, name: str = MODEL_NAME):
    """Log ``checkpoint_dir`` as a pyfunc model in the active run; returns MLflow's ModelInfo."""
    read_checkpoint_config(checkpoint_dir)  # refuse anything that is not a checkpoint
    staging = Path(tempfile.mkdtemp(prefix="entroad-pyfunc-"))
    try:
        # copied under the name "checkpoint" so the artifact tree says what it is
        ckpt = staging / ARTIFACT_NAME
        shutil.copytree(checkpoint_dir, ckpt)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(Path(__file__).with_name(ENTRY_FILE)),
            artifacts={ARTIFACT_NAME: str(ckpt)},
            code_paths=[entroad_code_path()],
            pip_requirements=pip_requirements(),
            signature=signature(),
            input_example=pd.DataFrame({B64_COL: [example_image_b64()]}),
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
