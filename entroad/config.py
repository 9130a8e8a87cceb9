"""Validated configuration: ``params.yaml`` -> pydantic models.

``params.yaml`` at the repository root is the single source of truth for every tunable of
METHOD.md and of the pipeline (DVC reads the same file for its stages). Unknown keys and bad
values are errors that name the offending key (``model.entropy: ...``). CLI options override
single keys with ``--set section.key=value``; the resolved config is what gets logged.

Sections are owned by the piece that reads them: ``backbone``/``model``/``train`` by the
model core, ``data`` by ingestion, ``evaluation`` by evaluation, ``tracking``/``promotion``/
``schedule``/``orchestration`` by the MLflow + Prefect layer.
"""

from __future__ import annotations

from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from entroad.errors import ConfigError, DatasetNotConfiguredError, did_you_mean

DEFAULT_PARAMS = "params.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------------------------
# Model core
# --------------------------------------------------------------------------------------------
class BackboneConfig(_Strict):
    """Which frozen CLIP ViT to use and where its weights come from."""

    name: str = "ViT-L-14-336"
    # open_clip pretrained tag ("openai"), a local weights file, or null for random init.
    pretrained: str | None = "openai"
    image_size: int = Field(518, ge=32)
    # Override of the open_clip / Hugging Face cache folder (None = their defaults).
    cache_dir: str | None = None
    # When the weights are not on this machine: fall back to the tiny random-init config
    # (loudly labelled everywhere) instead of failing. Production sites set this to false.
    random_init_fallback: bool = True
    fallback_name: str = "entroad-tiny"
    fallback_image_size: int = Field(224, ge=32)
    # Seed of random-init backbones, so a checkpoint can rebuild the exact same backbone.
    init_seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU

    @field_validator("pretrained")
    @classmethod
    def _none_words(cls, v: str | None) -> str | None:
        if v is not None and v.strip().lower() in {"", "none", "null", "random"}:
            return None
        return v


LayerSpec = list[int] | Literal["auto"]


class ModelConfig(_Strict):
    """Every option of METHOD.md sections 1-6 (defaults are the spec's defaults)."""

    # §1 frozen visual pass ("auto" = quarters of the depth: [6,12,18,24] for 24 blocks)
    feature_layers: LayerSpec = "auto"
    graph_layers: LayerSpec = "auto"  # "auto" = feature_layers
    vv_start: int | Literal["auto"] = "auto"  # "auto" = round(6 * depth / 24)
    # §2-3 relation graph and structural entropy
    entropy: Literal["2d", "1d", "transition", "none"] = "2d"
    modules: int = Field(8, ge=2, description="K, number of modules of the 2-D encoding tree")
    kmeans_iters: int = Field(10, ge=1)
    kmeans_seed: int = 0
    graph_knn: int = Field(0, ge=0, description="0 = dense graph")
    # §4 routing and adapters
    routing: Literal["soft", "hard", "none"] = "soft"
    routing_ratio: float = Field(0.5, gt=0.0, lt=1.0, description="rho")
    routing_tau_init: float = Field(1.0, gt=0.0)
    adapter_reduction: int = Field(4, ge=1)
    # §5 prompts and fusion
    branches: Literal["dual", "adapted", "prior"] = "dual"
    confidence: bool = True
    confidence_gamma_init: float = Field(1.0, gt=0.0)
    prompt_length: int = Field(12, ge=1)
    deep_prompt_depth: int = Field(9, ge=1)
    deep_prompt_tokens: int = Field(4, ge=1)
    prior_object: str = "object"
    use_class_names: bool = False
    temperature: float = Field(0.07, gt=0.0)
    # §6 map and score
    sigma: float = Field(4.0, ge=0.0)
    alpha: float = Field(0.5, ge=0.0, le=1.0)

    @field_validator("confidence", mode="before")
    @classmethod
    def _on_off(cls, v: Any) -> Any:
        if isinstance(v, str) and v.lower() in {"on", "off"}:
            return v.lower() == "on"
        return v

    @field_validator("feature_layers", "graph_layers")
    @classmethod
    def _layers(cls, v: LayerSpec) -> LayerSpec:
        if isinstance(v, list):
            if not v:
                raise ValueError("must list at least one layer (1-based block index) or be 'auto'")
            if any(i < 1 for i in v):
                raise ValueError("layers are 1-based block indices (>= 1)")
            if len(set(v)) != len(v):
                raise ValueError("layers must not repeat")
            return sorted(v)
        return v


class TrainConfig(_Strict):
    """METHOD.md §7."""

    dataset: str = "synthetic-industrial"  # processed dataset name (the auxiliary domain)
    split: Literal["test", "train", "all"] = "test"  # the protocol trains on the test split
    lr: float = Field(1e-3, gt=0.0)
    betas: tuple[float, float] = (0.5, 0.999)
    batch_size: int = Field(8, ge=1)
    epochs: int = Field(15, ge=1)
    seed: int = 111
    focal_gamma: float = Field(2.0, ge=0.0)
    lambda_prior: float = Field(0.1, ge=0.0)
    lambda_bal: float = Field(0.01, ge=0.0)
    lambda_branch: float = Field(1.0, ge=0.0)
    num_workers: int = Field(0, ge=0)
    keep_checkpoints: int = Field(2, ge=1, description="per-epoch checkpoints kept for --resume")


# --------------------------------------------------------------------------------------------
# Data (ingestion)
# --------------------------------------------------------------------------------------------
class DatasetSpec(_Strict):
    """One dataset to ingest: a raw layout + the reader that understands it."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    format: str
    source: str | None = None  # raw folder (relative to the repo root) or None for generators
    domain: Literal["industrial", "medical"] | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    # Bundled sample data: how `entroad data samples` creates the raw folder (kind + args).
    generate: dict[str, Any] | None = None


class DataConfig(_Strict):
    root: str = "datasets"  # holds raw/ and processed/
    remote: str | None = None  # DVC remote url (None = the default local remote of the repo)
    datasets: list[DatasetSpec] = Field(default_factory=list)

    @field_validator("datasets", mode="before")
    @classmethod
    def _mapping_form(cls, v: Any) -> Any:
        # params.yaml keys datasets by name (so DVC's foreach names stages ingest@<name>);
        # a list of specs that each carry a name is accepted too.
        if isinstance(v, dict):
            out = []
            for name, spec in v.items():
                spec = dict(spec or {})
                if spec.setdefault("name", name) != name:
                    raise ValueError(f"dataset {name!r} has a different name: {spec['name']!r}")
                out.append(spec)
            return out
        return v

    @model_validator(mode="after")
    def _unique(self) -> DataConfig:
        names = [d.name for d in self.datasets]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"dataset names must be unique, repeated: {sorted(dup)}")
        return self

    def get(self, name: str) -> DatasetSpec:
        for d in self.datasets:
            if d.name == name:
                return d
        known = [d.name for d in self.datasets]
        raise DatasetNotConfiguredError(
            f"no dataset named {name!r} in params.yaml{did_you_mean(name, known)}; configured: "
            f"{', '.join(known) or 'none'}. To add it: an entry under data.datasets, e.g. "
            f"`{name}: {{format: folder, source: datasets/raw/{name}}}` (layouts: `entroad data formats`)"
        )


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------
class SuiteSpec(_Strict):
    """A cross-domain protocol: train on ``train``, evaluate zero-shot on ``targets``."""

    train: str
    targets: list[str]


class EvaluationConfig(_Strict):
    targets: list[str] = Field(default_factory=list)  # default target datasets
    suites: dict[str, SuiteSpec] = Field(default_factory=dict)
    split: Literal["test", "train", "all"] = "test"
    batch_size: int = Field(8, ge=1)
    max_fpr: float = Field(0.3, gt=0.0, le=1.0)  # AUPRO integration limit
    # AUPRO definition: official (MVTec AD, exact curve ÷ max_fpr) or anomalyclip (its
    # cal_pro_score: 200 thresholds, kept FPRs rescaled). The METHOD §9 comparison always
    # uses anomalyclip, the definition of its reference numbers.
    aupro: Literal["official", "anomalyclip"] = "official"
    specificity: float = Field(0.95, gt=0.0, lt=1.0)  # operating point on evaluated normals
    sensitivity: float | None = Field(None, gt=0.0, lt=1.0)  # when set, wins over specificity
    report_examples: int = Field(6, ge=0)
    # Pixel metrics: exact (all pixels in RAM), binned (fixed histograms), or auto (exact
    # until exact_pixel_limit pixels per dataset, then binned).
    pixel_metrics: Literal["auto", "exact", "binned"] = "auto"
    pixel_bins: int = Field(1 << 16, ge=256, le=1 << 24)
    exact_pixel_limit: int = Field(1 << 22, ge=0)
    # Image metrics of a class need at least this many normal and anomalous images.
    min_per_label: int = Field(3, ge=1)
    num_workers: int = Field(2, ge=0)  # image-loading processes
    # Dataset name -> reference key of METHOD.md §9 (mvtec, visa, btad, brainmri) when the
    # name alone does not say it.
    reference_names: dict[str, str] = Field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Tracking, promotion, schedule, orchestration
# --------------------------------------------------------------------------------------------
class TrackingConfig(_Strict):
    # None = embedded sqlite store in mlflow/ (MLFLOW_TRACKING_URI, when set, wins).
    uri: str | None = None
    artifact_root: str = "mlflow/artifacts"
    experiment: str = "entroad"
    registered_model: str = "entroad"


class PromotionConfig(_Strict):
    metrics: list[str] = Field(default_factory=lambda: ["image_auroc", "pixel_auroc", "pixel_aupro"])
    margin: float = Field(0.5, ge=0.0, description="mean improvement needed, in metric points (%)")
    tolerance: float = Field(1.0, ge=0.0, description="allowed per-domain regression, in points (%)")


class ScheduleConfig(_Strict):
    # Scheduled retraining (`python -m flows serve`): fires only while that process runs.
    cron: str = "0 3 * * 1"
    timezone: str = "UTC"
    deployment: str = Field("entroad-retrain", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class OrchestrationConfig(_Strict):
    # Where the evaluation fan-out runs: threads of the flow process, or Dask workers.
    task_runner: Literal["thread", "dask"] = "thread"
    parallel: int = Field(2, ge=1, description="datasets evaluated at once with the thread runner")
    dask_workers: int = Field(2, ge=1, description="workers of the local Dask cluster started for a run")
    # An existing Dask scheduler (tcp://host:8786) instead of a local cluster.
    dask_address: str | None = None
    # How long a retrain waits for another one on this checkout to finish before failing.
    lock_wait_s: float = Field(0.0, ge=0.0)


# --------------------------------------------------------------------------------------------
class Params(_Strict):
    """The whole of params.yaml."""

    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    orchestration: OrchestrationConfig = Field(default_factory=OrchestrationConfig)

    def resolved(self) -> dict[str, Any]:
        """JSON-safe dict of every value (what gets logged)."""
        return self.model_dump(mode="json")

    def flat(self) -> dict[str, Any]:
        """``{"model.entropy": "2d", ...}`` for MLflow params."""
        out: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict) and value:
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            else:
                out[prefix] = value

        walk("", self.resolved())
        return out


def _model_at(path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config model at ``path`` (``("data", "datasets", 3)`` -> DatasetSpec), for hints."""
    node: Any = Params
    for part in path:
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(str(part))
            if field is None:
                return None
            node = field.annotation
        elif get_origin(node) in (list, dict):
            node = get_args(node)[-1]  # list[X] / dict[str, X]: the part is an index or key
        else:
            return None
        args = [a for a in get_args(node) if a is not type(None)]
        if get_origin(node) in (Union, UnionType) and len(args) == 1:
            node = args[0]
    return node if isinstance(node, type) and issubclass(node, BaseModel) else None


def _dataset_names(raw: dict[str, Any]) -> list[str] | None:
    datasets = (raw.get("data") or {}).get("datasets") if isinstance(raw.get("data"), dict) else None
    if isinstance(datasets, dict):
        return [str(k) for k in datasets]
    if isinstance(datasets, list):
        return [str(d.get("name", i)) if isinstance(d, dict) else str(i) for i, d in enumerate(datasets)]
    return None


def _format_validation_error(err: ValidationError, source: str, raw: dict[str, Any] | None = None) -> str:
    names = _dataset_names(raw or {})
    lines = []
    for e in err.errors():
        loc = list(e["loc"])
        # data.datasets.3.option -> data.datasets.my-line.option: the key the user wrote
        if names and loc[:2] == ["data", "datasets"] and len(loc) > 2 and isinstance(loc[2], int) and loc[2] < len(names):
            loc[2] = names[loc[2]]
        where = ".".join(str(p) for p in loc) or "<root>"
        got = e.get("input")
        if e["type"] == "extra_forbidden":
            model = _model_at(tuple(e["loc"][:-1]))
            hint = did_you_mean(str(loc[-1]), model.model_fields) if model else ""
            lines.append(f"{source}: {where}: unknown key{hint}")
        else:
            lines.append(f"{source}: {where}: {e['msg']} (got {got!r})")
    return "\n".join(lines)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override {text!r} has an empty key")
    return path, yaml.safe_load(raw) if raw.strip() else None


def apply_overrides(data: dict[str, Any], overrides: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """Apply ``["model.entropy=none", ...]`` or ``{"model.entropy": "none"}`` to a raw dict."""
    if not overrides:
        return data
    items = (
        [(k.split("."), v) for k, v in overrides.items()]
        if isinstance(overrides, dict)
        else [_parse_override(o) for o in overrides]
    )
    for path, value in items:
        node = data
        for p in path[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {'.'.join(path)}: {p!r} is not a section")
            node = nxt
        node[path[-1]] = value
    return data


def params_from_dict(
    data: dict[str, Any] | None, overrides: list[str] | dict[str, Any] | None = None, source: str = "params"
) -> Params:
    raw = apply_overrides(dict(data or {}), overrides)
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source, raw)) from None


def load_params(
    path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None
) -> Params:
    """Read and validate ``params.yaml`` (default: ``./params.yaml``; missing file = defaults)."""
    p = Path(path or DEFAULT_PARAMS)
    if path is not None and not p.is_file():
        raise ConfigError(f"{p}: no such params file")
    data: dict[str, Any] = {}
    if p.is_file():
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: top level must be a mapping of sections")
    import copy

    return params_from_dict(copy.deepcopy(data), overrides, source=str(p))
