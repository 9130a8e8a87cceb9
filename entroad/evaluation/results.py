"""Result types of an evaluation: what was evaluated, per-class and per-dataset metrics, the
few example maps the report shows. The engine fills them; tables, writers and the report read
them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from entroad import __version__
from entroad.evaluation.metrics import METRIC_KEYS, Curves, OperatingPoint
from entroad.model_source import BASE_VARIANT

DISPLAY_SIZE = 320  # maps kept for the report's example grids are stored at most this size

EXAMPLE_KINDS = {
    "most_anomalous": "Most anomalous images",
    "false_positives": "Highest-scoring normal images (false positives above the threshold)",
    "false_negatives": "Lowest-scoring anomalous images (false negatives below the threshold)",
}



# --------------------------------------------------------------------------------------------
# Result objects
# --------------------------------------------------------------------------------------------
@dataclass
class ModelIdentity:
    """What was evaluated: enough to reproduce it and to see a random-init backbone at once."""

    source: str  # the path or MLflow URI given
    backbone: str
    pretrained: str | None
    random_init: bool
    weights_sha256: str
    image_size: int
    variant: str = BASE_VARIANT
    overrides: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # model options actually used
    trained_on: dict[str, Any] | None = None

    @classmethod
    def of(cls, model, source: str, variant: str = BASE_VARIANT, overrides: dict | None = None) -> ModelIdentity:
        info = model.backbone_info
        cfg = getattr(model, "checkpoint_config", None) or {}
        return cls(
            source=source,
            backbone=info.name,
            pretrained=info.pretrained,
            random_init=bool(info.random_init),
            weights_sha256=info.weights_sha256,
            image_size=int(model.image_size),
            variant=variant,
            overrides=dict(overrides or {}),
            options=model.cfg.model_dump(mode="json"),
            trained_on=cfg.get("trained_on"),
        )

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ClassResult:
    dataset: str
    cls: str
    n_images: int
    n_normal: int
    n_anomalous: int
    n_pixel_images: int  # images that entered the pixel metrics
    metrics: dict[str, float | None]  # percent; None where undefined
    excluded: dict[str, str] = field(default_factory=dict)  # "image" / "pixel" -> reason
    pixel_exact: bool | None = None
    pixel_bound: dict[str, float] = field(default_factory=dict)  # percent points
    image_curves: Curves | None = field(default=None, repr=False)
    pixel_curves: Curves | None = field(default=None, repr=False)

    def row(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "class": self.cls,
            "n_images": self.n_images,
            "n_normal": self.n_normal,
            "n_anomalous": self.n_anomalous,
            "n_pixel_images": self.n_pixel_images,
            **{k: self.metrics.get(k) for k in METRIC_KEYS},
            "excluded": "; ".join(f"{k}: {v}" for k, v in self.excluded.items()),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.row(),
            "excluded": dict(self.excluded),
            "pixel_exact": self.pixel_exact,
            "pixel_bound": dict(self.pixel_bound),
        }


@dataclass
class Example:
    """One image kept for the report's grids (maps already on the CPU, display size)."""

    dataset: str
    cls: str
    image: str  # path relative to the dataset folder
    image_path: Path
    label: int
    score: float
    anomaly_map: np.ndarray
    mask: np.ndarray | None
    entropy_map: np.ndarray
    routing_map: np.ndarray
    confidence_map: np.ndarray


@dataclass
class DatasetResult:
    name: str
    domain: str
    data_version: str
    split: str
    n_images: int
    n_normal: int
    n_anomalous: int
    metrics: dict[str, float | None]  # percent, mean over classes; None where undefined
    classes: list[ClassResult]
    exclusions: list[dict[str, str]] = field(default_factory=list)  # {"class", "metrics", "reason"}
    notes: list[str] = field(default_factory=list)
    pixel_exact: bool | None = None
    pixel_bound: dict[str, float] = field(default_factory=dict)  # percent points (mean of classes)
    operating_point: OperatingPoint | None = None
    in_domain: bool = False
    reference: str | None = None  # key of REFERENCE
    # In memory only (report): every image score, its label and class, and the example maps.
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int), repr=False)
    image_classes: list[str] = field(default_factory=list, repr=False)
    images: list[str] = field(default_factory=list, repr=False)
    examples: dict[str, list[Example]] = field(default_factory=dict, repr=False)

    def row(self) -> dict[str, Any]:
        return {
            "dataset": self.name,
            "class": "(mean)",
            "n_images": self.n_images,
            "n_normal": self.n_normal,
            "n_anomalous": self.n_anomalous,
            "n_pixel_images": sum(c.n_pixel_images for c in self.classes),
            **{k: self.metrics.get(k) for k in METRIC_KEYS},
            "excluded": "; ".join(f"{e['class']} {e['metrics']}: {e['reason']}" for e in self.exclusions),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "domain": self.domain,
            "data_version": self.data_version,
            "split": self.split,
            "n_images": self.n_images,
            "n_normal": self.n_normal,
            "n_anomalous": self.n_anomalous,
            "metrics": dict(self.metrics),
            "exclusions": list(self.exclusions),
            "notes": list(self.notes),
            "pixel_exact": self.pixel_exact,
            "pixel_bound": dict(self.pixel_bound),
            "operating_point": self.operating_point.to_json() if self.operating_point else None,
            "in_domain": self.in_domain,
            "reference": self.reference,
            "classes": [c.to_json() for c in self.classes],
        }


@dataclass
class EvaluationResult:
    """Per-class and per-dataset results of one model variant (plus its ablation siblings)."""

    model: ModelIdentity
    datasets: list[DatasetResult]
    settings: dict[str, Any]
    suite: str | None = None
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    variants: dict[str, EvaluationResult] = field(default_factory=dict)  # ablations, by name
    output_dir: Path | None = None

    @property
    def random_init(self) -> bool:
        return self.model.random_init

    def dataset(self, name: str) -> DatasetResult:
        for d in self.datasets:
            if d.name == name:
                return d
        raise KeyError(name)

    def per_dataset_table(self) -> list[dict[str, Any]]:
        return [d.row() for d in self.datasets]

    def per_class_table(self) -> list[dict[str, Any]]:
        return [c.row() for d in self.datasets for c in d.classes]

    def mlflow_metrics(self, prefix: str = "") -> dict[str, float]:
        """``{"<dataset>/<metric>": percent}`` for every defined dataset-level metric."""
        return {
            f"{prefix}{d.name}/{k}": float(v) for d in self.datasets for k, v in d.metrics.items() if v is not None
        }

    def domain_means(self) -> dict[str, dict[str, float]]:
        """Mean of each metric over the evaluated datasets of each domain (defined values only)."""
        out: dict[str, dict[str, float]] = {}
        for dom in sorted({d.domain for d in self.datasets}):
            ds = [d for d in self.datasets if d.domain == dom]
            out[dom] = {
                k: float(np.mean(vals))
                for k in METRIC_KEYS
                if (vals := [d.metrics[k] for d in ds if d.metrics.get(k) is not None])
            }
        return out

    def ablation_table(self) -> list[dict[str, Any]]:
        """One row per (variant, dataset); ``delta_<metric>`` against the full model."""
        if not self.variants:
            return []
        rows = []
        base = {d.name: d.metrics for d in self.datasets}
        for name, res in [(BASE_VARIANT, self), *self.variants.items()]:
            for d in res.datasets:
                row: dict[str, Any] = {"variant": name, "dataset": d.name, **{k: d.metrics.get(k) for k in METRIC_KEYS}}
                for k in METRIC_KEYS:
                    a, b = d.metrics.get(k), base[d.name].get(k)
                    row[f"delta_{k}"] = None if a is None or b is None or name == BASE_VARIANT else a - b
                rows.append(row)
        return rows

    def to_json(self) -> dict[str, Any]:
        out = {
            "entroad_version": __version__,
            "created": self.created,
            "random_init": self.random_init,
            "model": self.model.to_json(),
            "suite": self.suite,
            "settings": dict(self.settings),
            "datasets": [d.to_json() for d in self.datasets],
            "domain_means": self.domain_means(),
        }
        if self.variants:
            out["ablation"] = {
                "note": "inference-time ablation: the same learnable weights with the listed options changed",
                "variants": {n: {"overrides": r.model.overrides, "datasets": [d.to_json() for d in r.datasets]}
                             for n, r in self.variants.items()},
                "table": self.ablation_table(),
            }
        return out
