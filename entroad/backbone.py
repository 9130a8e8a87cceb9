"""Frozen CLIP backbone: open_clip model + weights resolution that works offline.

Where weights come from, in order (first hit wins, nothing is downloaded here):

1. ``pretrained`` is a path to a local file → that file.
2. The project's imported-weights store (``entroad weights import``), for air-gapped sites:
   ``$ENTROAD_WEIGHTS_DIR`` or ``~/.cache/entroad/weights/<name>/<tag>/``.
3. The open_clip / Hugging Face caches that ``entroad weights fetch`` (or open_clip) fill.

If none has the file, :class:`WeightsNotFoundError` names the exact file, where it was
looked for and the two commands that fix it. With ``random_init_fallback`` the caller gets
the tiny random-init config instead, labelled as such (``BackboneInfo.random_init``).

The input size is any multiple of the patch size: open_clip's ``force_image_size`` builds
the model at that size and its checkpoint loader interpolates the positional embedding
(bicubic), so 518 px for ViT-L/14-336 works out of the box. Deviation: AnomalyCLIP resizes
it bilinearly at run time; we keep open_clip's one-off bicubic resize of the weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import open_clip
import torch

from entroad.config import BackboneConfig
from entroad.errors import ConfigError, UnsupportedBackboneError, WeightsNotFoundError
from entroad.rng import seeded_init

log = logging.getLogger(__name__)

TINY_NAME = "entroad-tiny"
_CONFIG_DIR = Path(__file__).parent / "model_configs"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
RANDOM_INIT_BANNER = (
    "RANDOM-INIT BACKBONE: {name} has random weights (no pretrained CLIP weights were used). "
    "Scores only show that the pipeline runs; they say nothing about real anomaly detection."
)
_random_init_shown: set[str] = set()  # one notice per process (= per command), however often a backbone loads


def warn_random_init(name: str, logger: logging.Logger | None = None) -> bool:
    """Log the RANDOM-INIT banner for backbone ``name`` once per process; True when logged now."""
    if name in _random_init_shown:
        return False
    _random_init_shown.add(name)
    (logger or log).warning(RANDOM_INIT_BANNER.format(name=name))
    return True


def random_init_shown() -> bool:
    """Whether this process already showed the banner (a CLI then adds no second notice)."""
    return bool(_random_init_shown)


def register_project_configs() -> None:
    """Make the project's open_clip configs (``entroad-tiny``) known to open_clip; idempotent."""
    if TINY_NAME not in open_clip.list_models():
        open_clip.add_model_config(_CONFIG_DIR)


@dataclass
class BackboneInfo:
    """Identity of a loaded backbone, stored in checkpoints and MLflow tags."""

    name: str
    pretrained: str | None
    image_size: int
    patch_size: int
    random_init: bool
    weights_sha256: str
    weights_file: str | None = None
    init_seed: int = 0
    fallback_reason: str | None = None
    mean: tuple[float, ...] = field(default_factory=lambda: tuple(open_clip.OPENAI_DATASET_MEAN))
    std: tuple[float, ...] = field(default_factory=lambda: tuple(open_clip.OPENAI_DATASET_STD))

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    def to_json(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_json(cls, d: dict) -> BackboneInfo:
        d = dict(d)
        d["mean"], d["std"] = tuple(d.get("mean") or ()), tuple(d.get("std") or ())
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class Backbone:
    model: torch.nn.Module  # open_clip CLIP, frozen, eval mode
    tokenizer: object
    info: BackboneInfo


# ------------------------------------------------------------------------------------------
# Weights resolution
# ------------------------------------------------------------------------------------------
def weights_store() -> Path:
    """Folder of imported weights (air-gapped sites): ``$ENTROAD_WEIGHTS_DIR`` or ~/.cache."""
    return Path(os.environ.get("ENTROAD_WEIGHTS_DIR") or Path.home() / ".cache" / "entroad" / "weights")


def _is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def pretrained_cfg(name: str, tag: str) -> dict:
    register_project_configs()
    if name not in open_clip.list_models():
        raise ConfigError(
            f"backbone.name: {name!r} is not an open_clip model; e.g. ViT-L-14-336, ViT-B-16 "
            f"(see `python -c 'import open_clip; print(open_clip.list_models())'`)"
        )
    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise ConfigError(
            f"backbone.pretrained: {tag!r} is neither a file nor a known tag for {name} "
            f"(known tags: {', '.join(tags) or 'none'})"
        )
    return cfg


def _expected_files(cfg: dict) -> tuple[str | None, list[str], str | None]:
    """(hf repo id, candidate filenames in that repo, url) for a pretrained cfg."""
    hub = cfg.get("hf_hub") or ""
    repo, fname = os.path.split(hub) if hub else (None, "")
    names: list[str] = []
    if hub:
        fname = fname or "open_clip_pytorch_model.bin"
        if fname == "open_clip_pytorch_model.bin":
            names.append("open_clip_model.safetensors")
        elif fname.endswith((".bin", ".pth")):
            names.append(fname[:-4] + ".safetensors")
        names.append(fname)
    return repo or None, names, cfg.get("url") or None


def _find_in_store(name: str, tag: str) -> Path | None:
    folder = weights_store() / name / tag
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.suffix in _WEIGHT_SUFFIXES and p.is_file():
                return p
    return None


def _find_in_caches(cfg: dict, cache_dir: str | None) -> Path | None:
    repo, names, url = _expected_files(cfg)
    if repo:
        from huggingface_hub import try_to_load_from_cache

        for fname in names:
            hit = try_to_load_from_cache(repo_id=repo, filename=fname, cache_dir=cache_dir)
            if isinstance(hit, str) and os.path.isfile(hit):
                return Path(hit)
    if url:
        target = Path(cache_dir or Path.home() / ".cache" / "clip") / os.path.basename(url)
        if target.is_file():
            return target
    return None


def resolve_weights(name: str, pretrained: str | None, cache_dir: str | None = None) -> Path | None:
    """Local path of the weights for (name, pretrained); None means random init.

    Never downloads. Raises :class:`WeightsNotFoundError` naming the missing file.
    """
    if pretrained is None:
        return None
    p = Path(pretrained).expanduser()
    if p.suffix in _WEIGHT_SUFFIXES or os.sep in pretrained or pretrained.startswith("."):
        if p.is_file():
            return p
        raise WeightsNotFoundError(
            f"backbone.pretrained points to {p}, which does not exist. Give the path of an open_clip "
            f"weights file for {name} (.safetensors/.bin/.pt), or an open_clip tag such as 'openai'."
        )
    cfg = pretrained_cfg(name, pretrained)
    hit = _find_in_store(name, pretrained) or _find_in_caches(cfg, cache_dir)
    if hit is not None:
        return hit
    repo, names, url = _expected_files(cfg)
    where = [str(weights_store() / name / pretrained)]
    if repo:
        from huggingface_hub import constants

        where.append(f"Hugging Face cache {cache_dir or constants.HF_HUB_CACHE}: {repo}/{names[-1]}")
    if url:
        where.append(str(Path(cache_dir or Path.home() / ".cache" / "clip") / os.path.basename(url)))
    file_hint = f"{repo}/{names[-1]}" if repo else (os.path.basename(url) if url else "the weights file")
    raise WeightsNotFoundError(
        f"pretrained weights for {name} (tag {pretrained!r}) are not on this machine "
        f"({'offline mode, ' if _is_offline() else ''}looked in: {'; '.join(where)}). "
        f"Needed file: {file_hint}"
        + (f" (also at {url})" if url else "")
        + ". Fix: with network run `entroad weights fetch --name "
        f"{name} --tag {pretrained}`; on an air-gapped site copy the file over and run "
        f"`entroad weights import PATH --name {name} --tag {pretrained}`; or set backbone.pretrained "
        "to the file's path."
    )


def fetch_weights(name: str, tag: str, cache_dir: str | None = None) -> Path:
    """Download weights into the open_clip / HF cache (needs network)."""
    cfg = pretrained_cfg(name, tag)
    hit = _find_in_caches(cfg, cache_dir) or _find_in_store(name, tag)
    if hit is not None:
        return hit
    if _is_offline():
        raise WeightsNotFoundError(
            f"HF_HUB_OFFLINE is set, so {name}/{tag} cannot be downloaded. Unset it on a machine with "
            "network, or use `entroad weights import PATH` with a copied file."
        )
    try:
        path = open_clip.download_pretrained(cfg, cache_dir=cache_dir)
    except Exception as e:  # network errors come in many types; all mean the same to the user
        raise WeightsNotFoundError(
            f"downloading {name}/{tag} failed ({type(e).__name__}: {e}). Check the network/proxy, or "
            f"copy the file from a connected machine and run `entroad weights import PATH --name {name} --tag {tag}`."
        ) from None
    if not path or not os.path.isfile(path):
        raise WeightsNotFoundError(f"open_clip returned no file for {name}/{tag}")
    return Path(path)


def import_weights(path: str | Path, name: str, tag: str, verify: bool = True) -> Path:
    """Copy a weights file into the imported-weights store (air-gapped install)."""
    src = Path(path).expanduser()
    if not src.is_file():
        raise WeightsNotFoundError(f"{src}: no such weights file")
    if src.suffix not in _WEIGHT_SUFFIXES:
        raise WeightsNotFoundError(f"{src}: expected one of {', '.join(_WEIGHT_SUFFIXES)}")
    pretrained_cfg(name, tag)  # validates name and tag
    if verify:
        try:
            _create(name, str(src), image_size=None, quick_gelu=_tag_quick_gelu(name, tag))
        except (UnsupportedBackboneError, RuntimeError, KeyError, ValueError) as e:
            raise WeightsNotFoundError(f"{src} does not load into {name}: {e}") from None
    dest_dir = weights_store() / name / tag
    dest_dir.mkdir(parents=True, exist_ok=True)
    for old in dest_dir.iterdir():
        if old.suffix in _WEIGHT_SUFFIXES:
            old.unlink()
    dest = dest_dir / src.name
    tmp = dest.with_name(dest.name + ".partial")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    sha = file_sha256(dest)
    (dest_dir / "weights.json").write_text(json.dumps({"file": dest.name, "sha256": sha}, indent=2))
    return dest


# ------------------------------------------------------------------------------------------
# Hashing
# ------------------------------------------------------------------------------------------
def _sha_cache_path() -> Path:
    return weights_store().parent / "sha256-cache.json"


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a weights file, cached by (path, size, mtime) since files are large."""
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    cache_file = _sha_cache_path()
    cache: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        cache = json.loads(cache_file.read_text())
    if key in cache:
        return cache[key]
    with open(path, "rb") as f:
        cache[key] = hashlib.file_digest(f, "sha256").hexdigest()
    with contextlib.suppress(OSError):
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(cache))
    return cache[key]


def state_sha256(module: torch.nn.Module) -> str:
    """Hash of a module's tensors (identifies random-init backbones across machines)."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------
# Building
# ------------------------------------------------------------------------------------------
def _tag_quick_gelu(name: str, tag: str | None) -> bool:
    if not tag or os.sep in tag or Path(tag).suffix in _WEIGHT_SUFFIXES:
        return False
    cfg = open_clip.get_pretrained_cfg(name, tag) or {}
    return bool(cfg.get("quick_gelu", False))


class _DropOpenClipRandomNotice(logging.Filter):
    """open_clip's own root-logger notice for random init; our RANDOM-INIT banner replaces it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


def _create(name: str, weights: str | None, image_size: int | None, quick_gelu: bool) -> torch.nn.Module:
    register_project_configs()
    root, notice = logging.getLogger(), _DropOpenClipRandomNotice()
    root.addFilter(notice)
    try:
        return open_clip.create_model(
            name,
            pretrained=weights,
            force_image_size=image_size,
            force_quick_gelu=quick_gelu,
            device="cpu",
            precision="fp32",
        )
    except RuntimeError as e:
        raise UnsupportedBackboneError(f"open_clip could not build {name} from {weights or 'random init'}: {e}") from None
    finally:
        root.removeFilter(notice)


def _check_vit(model: torch.nn.Module, name: str) -> tuple[int, int]:
    visual = getattr(model, "visual", None)
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if blocks is None or not hasattr(visual, "conv1"):
        raise UnsupportedBackboneError(f"{name}: EntroAD needs an open_clip ViT image tower (got {type(visual).__name__})")
    if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
        raise UnsupportedBackboneError(f"{name}: attention-pooled / average-pooled towers are not supported")
    for b in blocks:
        if not isinstance(getattr(b, "attn", None), torch.nn.MultiheadAttention):
            raise UnsupportedBackboneError(f"{name}: blocks must use nn.MultiheadAttention")
    if not hasattr(model, "token_embedding") and not hasattr(getattr(model, "text", None), "token_embedding"):
        raise UnsupportedBackboneError(f"{name}: EntroAD needs open_clip's own text transformer (no HF text towers)")
    ps = visual.conv1.kernel_size[0]
    return ps, len(blocks)


def load_backbone(cfg: BackboneConfig, *, allow_fallback: bool | None = None) -> Backbone:
    """Build the frozen backbone described by ``cfg`` (CPU, fp32, eval, no grad).

    ``allow_fallback`` defaults to ``cfg.random_init_fallback``; checkpoints reload with
    ``False`` so they never silently swap backbones.
    """
    register_project_configs()
    allow_fallback = cfg.random_init_fallback if allow_fallback is None else allow_fallback
    name, image_size, pretrained = cfg.name, cfg.image_size, cfg.pretrained
    fallback_reason = None
    try:
        weights = resolve_weights(name, pretrained, cfg.cache_dir)
    except WeightsNotFoundError as e:
        if not allow_fallback:
            raise
        fallback_reason = str(e)
        log.warning("%s", e)
        log.warning(
            "Falling back to the tiny random-init backbone %r at %d px (backbone.random_init_fallback=true).",
            cfg.fallback_name,
            cfg.fallback_image_size,
        )
        name, image_size, pretrained, weights = cfg.fallback_name, cfg.fallback_image_size, None, None

    model_cfg = open_clip.get_model_config(name)
    if model_cfg is None:
        raise ConfigError(f"backbone.name: {name!r} is not an open_clip model config")
    patch = model_cfg["vision_cfg"].get("patch_size", 16)
    if image_size % patch:
        raise ConfigError(
            f"backbone.image_size: {image_size} is not divisible by the patch size {patch} of {name} "
            f"(e.g. {image_size // patch * patch} or {(image_size // patch + 1) * patch})"
        )
    quick_gelu = _tag_quick_gelu(name, pretrained)
    if weights is None:
        # Seeded so that a checkpoint of a random-init run can rebuild the very same backbone;
        # a private generator, so concurrent builds in other threads cannot perturb it.
        with seeded_init(cfg.init_seed):
            model = _create(name, None, image_size, quick_gelu)
    else:
        log.info("Loading %s weights from %s", name, weights)
        model = _create(name, str(weights), image_size, quick_gelu)
    patch_size, _ = _check_vit(model, name)
    model.eval().requires_grad_(False)
    if weights is None:
        sha = "random-init:" + state_sha256(model)
        warn_random_init(name)
    else:
        sha = file_sha256(weights)
    pcfg = (open_clip.get_pretrained_cfg(name, pretrained) if pretrained and weights is not None else {}) or {}
    info = BackboneInfo(
        name=name,
        pretrained=pretrained,
        image_size=image_size,
        patch_size=patch_size,
        random_init=weights is None,
        weights_sha256=sha,
        weights_file=str(weights) if weights is not None else None,
        init_seed=cfg.init_seed,
        fallback_reason=fallback_reason,
        mean=tuple(pcfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(pcfg.get("std", open_clip.OPENAI_DATASET_STD)),
    )
    return Backbone(model=model, tokenizer=open_clip.get_tokenizer(name), info=info)


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"backbone.device: {spec!r} requested but CUDA is not available (use auto or cpu)")
    return dev


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
