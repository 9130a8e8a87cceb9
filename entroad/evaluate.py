"""Cross-domain evaluation: score processed datasets with a trained model, compute metrics
per class and per dataset, and write results + report (METHOD.md §8).

``evaluate(model, datasets, params, out_dir)`` streams each dataset batch by batch through
the model (one decode of the images serves every ablation variant), accumulates image scores
(one float per image) and pixel statistics (bounded memory, see :mod:`entroad.metrics`), and
keeps only the few maps the report shows. Metrics are in percent; a dataset's value is the
mean over its classes, classes where a metric is undefined are excluded *and listed with the
reason* — never a silent number.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from entroad import __version__
from entroad.config import Params, load_params
from entroad.data.manifest import ProcessedDataset
from entroad.data.torch_dataset import ManifestImageDataset
from entroad.errors import (
    ConfigError,
    DatasetError,
    EntroADError,
    EvaluationError,
    InputError,
    UndefinedMetricError,
)
from entroad.logs import progress_bar
from entroad.metrics import (
    IMAGE_KEYS,
    METRIC_KEYS,
    PIXEL_KEYS,
    Curves,
    OperatingPoint,
    PixelMetricAccumulator,
    image_metrics,
    operating_point,
)
from entroad.model_source import (
    BASE_VARIANT,
    load_models,
    parse_ablations,
    resolved_checkpoint,
)

log = logging.getLogger(__name__)

DISPLAY_SIZE = 320  # maps kept for the report's example grids are stored at most this size

# METHOD.md §9: zero-shot reference numbers (%, per-class mean), keyed by our metric names.
REFERENCE: dict[str, dict[str, dict[str, float]]] = {
    "mvtec": {
        "WinCLIP (paper)": {"image_auroc": 91.8, "image_ap": 96.5, "pixel_auroc": 85.1, "pixel_aupro": 64.6},
        "APRIL-GAN": {"image_auroc": 86.1, "image_ap": 93.5, "pixel_auroc": 87.6, "pixel_aupro": 44.0},
        "AnomalyCLIP": {"image_auroc": 91.5, "image_ap": 96.2, "pixel_auroc": 91.1, "pixel_aupro": 81.4},
        "EntroAD (third-party report)": {"pixel_aupro": 86.2},
    },
    "visa": {
        "WinCLIP (paper)": {"image_auroc": 78.1, "image_ap": 81.2, "pixel_auroc": 79.6, "pixel_aupro": 56.8},
        "APRIL-GAN": {"image_auroc": 78.0, "image_ap": 81.4, "pixel_auroc": 94.2, "pixel_aupro": 86.8},
        "AnomalyCLIP": {"image_auroc": 82.1, "image_ap": 85.4, "pixel_auroc": 95.5, "pixel_aupro": 87.0},
        "EntroAD (third-party report)": {"pixel_auroc": 94.8},
    },
    "btad": {"EntroAD (third-party report)": {"pixel_auroc": 96.1}},
    "brainmri": {"EntroAD (third-party report)": {"image_auroc": 96.1}},
}
REFERENCE_TITLES = {"mvtec": "MVTec AD", "visa": "VisA", "btad": "BTAD", "brainmri": "BrainMRI"}
_REFERENCE_ALIASES = {"mvtec": "mvtec", "mvtecad": "mvtec", "visa": "visa", "btad": "btad", "brainmri": "brainmri"}


def reference_key(dataset: str, explicit: Mapping[str, str] | None = None) -> str | None:
    """Which §9 reference row (if any) a dataset name stands for."""
    if explicit and dataset in explicit:
        key = explicit[dataset].lower()
        if key not in REFERENCE:
            raise ConfigError(
                f"evaluation.reference_names: {dataset!r} -> {key!r} is not one of {sorted(REFERENCE)}"
            )
        return key
    return _REFERENCE_ALIASES.get(re.sub(r"[^a-z0-9]", "", dataset.lower()))


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


# --------------------------------------------------------------------------------------------
# Streaming accumulation
# --------------------------------------------------------------------------------------------
class _ExampleKeeper:
    """The k best images by a priority, keeping their maps (a min-heap of size k)."""

    def __init__(self, k: int):
        self.k = k
        self.heap: list[tuple[float, int, Example]] = []
        self._tie = count()

    def wants(self, priority: float) -> bool:
        return self.k > 0 and (len(self.heap) < self.k or priority > self.heap[0][0])

    def push(self, priority: float, ex: Example) -> None:
        item = (priority, next(self._tie), ex)
        if len(self.heap) < self.k:
            heapq.heappush(self.heap, item)
        else:
            heapq.heapreplace(self.heap, item)

    def sorted(self) -> list[Example]:
        return [e for _, _, e in sorted(self.heap, key=lambda t: (-t[0], t[1]))]


EXAMPLE_KINDS = {
    "most_anomalous": "Most anomalous images",
    "false_positives": "Highest-scoring normal images (false positives above the threshold)",
    "false_negatives": "Lowest-scoring anomalous images (false negatives below the threshold)",
}


class EvalImageDataset(ManifestImageDataset):
    """The manifest view, refusing a mask whose shape does not fit its image.

    Images and masks are both resized to the model's S×S; a mask stored at another
    resolution but the same aspect ratio is therefore harmless, while one of another aspect
    ratio would be stretched onto the wrong pixels: that is an error naming both files.
    """

    def __getitem__(self, i: int) -> dict:
        item = super().__getitem__(i)
        rec = self.records[i]
        if rec.mask is not None:
            from PIL import Image

            with Image.open(self.dataset.path(rec.mask)) as m:  # header only: no decode
                mw, mh = m.size
            h, w = (int(v) for v in item["orig_size"])
            if abs(mw / mh - w / h) > 0.01 * (w / h):
                raise InputError(
                    f"dataset {self.dataset.name!r}: mask {rec.mask} is {mw}x{mh} px but its image {rec.image} "
                    f"is {w}x{h} px (another aspect ratio); fix or re-ingest the dataset"
                )
        return item


_WORKER_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Za-z_]\w*(?:Error|Exception): (.*)$")


def _batches(loader) -> Iterator[dict]:
    """Iterate a DataLoader; a user error raised in a loader worker keeps its type and gets
    back its one-line message (PyTorch re-raises it wrapped in the worker's traceback)."""
    it = iter(loader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except EntroADError as e:
            text = str(e)
            if "Original Traceback" not in text:
                raise
            lines = [ln for ln in text.strip().splitlines() if ln.strip()]
            m = _WORKER_LINE.match(lines[-1].strip()) if lines else None
            raise type(e)(m.group(1) if m else lines[-1]) from None
        yield batch


class _DatasetRun:
    """Accumulates one model variant's outputs over one dataset."""

    def __init__(self, ds: ProcessedDataset, records, cfg, n_examples: int, exact_limit: int):
        self.ds, self.records, self.cfg = ds, records, cfg
        classes = sorted({r.cls for r in records})
        per_class_limit = max(1, exact_limit // max(1, len(classes)))
        self.pixel = {
            c: PixelMetricAccumulator(cfg.pixel_metrics, cfg.pixel_bins, per_class_limit) for c in classes
        }
        self.scores = np.full(len(records), np.nan)
        self.keepers = {k: _ExampleKeeper(n_examples) for k in EXAMPLE_KINDS}

    def add(self, out, batch: dict[str, Any]) -> None:
        idx = batch["index"].tolist()
        scores = out.score.float().cpu().numpy().astype(np.float64)
        bad = ~np.isfinite(scores)
        if bad.any():
            raise EvaluationError(
                f"dataset {self.ds.name!r}: the model produced a non-finite score for "
                f"{self.records[idx[int(np.argmax(bad))]].image}; check the image and the checkpoint"
            )
        self.scores[idx] = scores
        pix = batch["pixel_label"].bool()
        if bool(pix.any()):
            by_class: dict[str, list[int]] = {}
            for j in torch.nonzero(pix).flatten().tolist():
                by_class.setdefault(batch["cls"][j], []).append(j)
            for c, js in by_class.items():
                sel = torch.tensor(js)
                try:
                    self.pixel[c].update(out.anomaly_map[sel.to(out.anomaly_map.device)], batch["mask"][sel].numpy())
                except EvaluationError as e:
                    names = ", ".join(self.records[idx[j]].image for j in js[:3])
                    raise EvaluationError(f"dataset {self.ds.name!r}, image(s) {names}: {e}") from None
        self._keep_examples(out, batch, idx, scores)

    def _keep_examples(self, out, batch, idx: list[int], scores: np.ndarray) -> None:
        for j, (i, s) in enumerate(zip(idx, scores, strict=True)):
            label = int(batch["label"][j])
            wants = {
                "most_anomalous": s,
                "false_positives": s if label == 0 else None,
                "false_negatives": -s if label == 1 else None,
            }
            chosen = [(k, p) for k, p in wants.items() if p is not None and self.keepers[k].wants(p)]
            if not chosen:
                continue
            ex = self._example(out, batch, j, i, float(s), label)
            for k, p in chosen:
                self.keepers[k].push(p, ex)

    def _example(self, out, batch, j: int, i: int, score: float, label: int) -> Example:
        rec = self.records[i]
        full = out.anomaly_map.shape[-1]
        size = min(DISPLAY_SIZE, full)
        amap = out.anomaly_map[j : j + 1, None].float()
        mask = None
        if bool(batch["pixel_label"][j]):
            mask = batch["mask"][j : j + 1, None].float()
        if size != full:  # only the few kept examples are resized, at display size
            amap = F.interpolate(amap, size=(size, size), mode="bilinear", align_corners=False)
            if mask is not None:
                mask = F.interpolate(mask, size=(size, size), mode="nearest")
        if mask is not None:
            mask = mask[0, 0].numpy() > 0.5

        def grid(t: torch.Tensor) -> np.ndarray:
            return t[j].float().cpu().numpy()

        return Example(
            dataset=self.ds.name,
            cls=rec.cls,
            image=rec.image,
            image_path=self.ds.path(rec.image),
            label=label,
            score=score,
            anomaly_map=amap[0, 0].cpu().numpy().astype(np.float16),
            mask=mask,
            entropy_map=grid(out.entropy_map),
            routing_map=grid(out.routing_map),
            confidence_map=grid(out.confidence_map),
        )

    # ------------------------------------------------------------------ finalise
    def result(self, data_version: str, in_domain: bool, reference: str | None, settings: dict) -> DatasetResult:
        cfg = self.cfg
        labels = np.array([r.label for r in self.records])
        classes_of = [r.cls for r in self.records]
        if np.isnan(self.scores).any():  # every record must have been scored exactly once
            raise EvaluationError(f"dataset {self.ds.name!r}: {int(np.isnan(self.scores).sum())} image(s) were not scored")
        has_masks = self.ds.has_masks
        class_results = []
        for c in sorted(self.pixel):
            sel = np.array([k == c for k in classes_of])
            y, s = labels[sel], self.scores[sel]
            n_norm, n_anom = int((y == 0).sum()), int((y == 1).sum())
            metrics: dict[str, float | None] = dict.fromkeys(METRIC_KEYS)
            excluded: dict[str, str] = {}
            image_curves = pixel_curves = None
            if n_norm < cfg.min_per_label or n_anom < cfg.min_per_label:
                excluded["image"] = _label_reason(n_norm, n_anom, cfg.min_per_label)
            else:
                im = image_metrics(s, y)
                metrics.update(im.as_percent())
                image_curves = im.curves
            acc = self.pixel[c]
            pixel_exact, pixel_bound = None, {}
            n_no_mask = sum(1 for r in self.records if r.cls == c and r.label == 1 and r.mask is None)
            if not has_masks:
                excluded["pixel"] = "the dataset has no pixel annotations (masks)"
            else:
                try:
                    pm = acc.compute(cfg.max_fpr)
                except UndefinedMetricError as e:
                    excluded["pixel"] = str(e)
                else:
                    metrics.update(pm.as_percent())
                    pixel_curves, pixel_exact = pm.curves, pm.exact
                    pixel_bound = {k: 100 * v for k, v in pm.bound.items()}
            if has_masks and n_no_mask:
                excluded.setdefault("pixel_partial", f"{n_no_mask} anomalous image(s) without a mask left out of pixel metrics")
            class_results.append(
                ClassResult(
                    dataset=self.ds.name,
                    cls=c,
                    n_images=int(sel.sum()),
                    n_normal=n_norm,
                    n_anomalous=n_anom,
                    n_pixel_images=acc.images,
                    metrics=metrics,
                    excluded=excluded,
                    pixel_exact=pixel_exact,
                    pixel_bound=pixel_bound,
                    image_curves=image_curves,
                    pixel_curves=pixel_curves,
                )
            )
        return self._aggregate(class_results, labels, classes_of, data_version, in_domain, reference)

    def _aggregate(self, class_results, labels, classes_of, data_version, in_domain, reference) -> DatasetResult:
        cfg = self.cfg
        means: dict[str, float | None] = {}
        exclusions: list[dict[str, str]] = []
        for group, keys in (("image", IMAGE_KEYS), ("pixel", PIXEL_KEYS)):
            reasons = [(c.cls, c.excluded[group]) for c in class_results if group in c.excluded]
            if len(reasons) == len(class_results) > 1 and len({r for _, r in reasons}) == 1:
                reasons = [("(all)", reasons[0][1])]  # one line instead of one per class
            exclusions.extend({"class": c, "metrics": group, "reason": r} for c, r in reasons)
            for k in keys:
                vals = [c.metrics[k] for c in class_results if c.metrics[k] is not None]
                means[k] = float(np.mean(vals)) if vals else None
        for c in class_results:
            if "pixel_partial" in c.excluded:
                exclusions.append({"class": c.cls, "metrics": "pixel (partial)", "reason": c.excluded["pixel_partial"]})
        notes = []
        n_norm, n_anom = int((labels == 0).sum()), int((labels == 1).sum())
        if means["image_auroc"] is None:
            notes.append("Image-level metrics are absent: " + _dataset_image_reason(n_norm, n_anom, cfg.min_per_label))
        if means["pixel_auroc"] is None:
            notes.append(
                "Pixel-level metrics are absent: "
                + ("the dataset has no masks." if not self.ds.has_masks else "no class has annotated anomalous regions and normal pixels.")
            )
        if in_domain:
            notes.append("In-domain: the model was trained on this dataset, so these are not zero-shot numbers.")
        pixel_exact = None
        bounds: dict[str, float] = {}
        with_pixels = [c for c in class_results if c.pixel_exact is not None]
        if with_pixels:
            pixel_exact = all(c.pixel_exact for c in with_pixels)
            bounds = {k: float(np.mean([c.pixel_bound[k] for c in with_pixels])) for k in PIXEL_KEYS}
        op = None
        try:
            if cfg.sensitivity is not None:
                op = operating_point(self.scores, labels, sensitivity=cfg.sensitivity)
            else:
                op = operating_point(self.scores, labels, specificity=cfg.specificity)
        except UndefinedMetricError as e:
            notes.append(f"No operating point: {e}.")
        return DatasetResult(
            name=self.ds.name,
            domain=self.ds.meta.domain,
            data_version=data_version,
            split=cfg.split,
            n_images=len(self.records),
            n_normal=n_norm,
            n_anomalous=n_anom,
            metrics=means,
            classes=class_results,
            exclusions=exclusions,
            notes=notes,
            pixel_exact=pixel_exact,
            pixel_bound=bounds,
            operating_point=op,
            in_domain=in_domain,
            reference=reference,
            scores=self.scores.copy(),
            labels=labels,
            image_classes=classes_of,
            images=[r.image for r in self.records],
            examples={k: kp.sorted() for k, kp in self.keepers.items()},
        )


def _label_reason(n_norm: int, n_anom: int, need: int) -> str:
    if n_norm == 0:
        return f"only anomalous images ({n_anom}); image metrics need normal images too"
    if n_anom == 0:
        return f"only normal images ({n_norm}); image metrics need anomalous images too"
    if n_norm < need <= n_anom:
        return (f"almost only anomalous images ({n_norm} normal, {n_anom} anomalous; image metrics need "
                f"evaluation.min_per_label={need} of each)")
    if n_anom < need <= n_norm:
        return (f"almost only normal images ({n_norm} normal, {n_anom} anomalous; image metrics need "
                f"evaluation.min_per_label={need} of each)")
    return f"too few images of one label ({n_norm} normal, {n_anom} anomalous; evaluation.min_per_label={need})"


def _dataset_image_reason(n_norm: int, n_anom: int, need: int) -> str:
    """Why a dataset has no image metrics: its label counts, or (enough of each overall) its classes."""
    if min(n_norm, n_anom) < need:
        return f"the dataset has {_label_reason(n_norm, n_anom, need)}."
    return f"no class has at least {need} normal and {need} anomalous images."


# --------------------------------------------------------------------------------------------
# The public entry point
# --------------------------------------------------------------------------------------------
def resolve_dataset(item: str | Path | ProcessedDataset, params: Params) -> tuple[ProcessedDataset, Path]:
    """A dataset given as a processed folder path, a configured/processed name, or an object."""
    if isinstance(item, ProcessedDataset):
        return item, item.root
    text = str(item)
    p = Path(text).expanduser()
    if not (p.exists() or "/" in text or "\\" in text):  # a plain name: <data.root>/processed/<name>
        from entroad.data.versioning import dataset_dir

        p = dataset_dir(params, text)
        if not p.is_dir():
            raise DatasetError(
                f"no processed dataset named {text!r} (looked in {p.parent}); ingest it with "
                "`entroad ingest` or pass the dataset folder"
            )
    return ProcessedDataset.load(p), p


def _data_version(ds: ProcessedDataset, path: Path) -> str:
    try:
        from entroad.data.versioning import data_version
    except ImportError:  # pragma: no cover - versioning is part of the package
        return "content:" + ds.meta.content_hash
    return data_version(path)


def suite_targets(params: Params, suite: str) -> list[str]:
    if suite not in params.evaluation.suites:
        known = ", ".join(sorted(params.evaluation.suites)) or "none configured"
        raise ConfigError(f"evaluation.suites: no suite named {suite!r} (known: {known})")
    return list(params.evaluation.suites[suite].targets)


def evaluate(
    model: str | Path | Any,
    datasets: Sequence[str | Path | ProcessedDataset] | None = None,
    params: Params | None = None,
    out_dir: str | Path | None = None,
    *,
    suite: str | None = None,
    ablations: str | Sequence[str] | Mapping[str, Mapping[str, Any]] | None = None,
    device: str | torch.device | None = None,
    weights: str | None = None,
    report: bool = True,
    progress: bool = True,
) -> EvaluationResult:
    """Evaluate a model zero-shot on datasets; write results (and the report) to ``out_dir``.

    ``model``: a checkpoint folder, an MLflow URI (``models:/entroad@champion``,
    ``runs:/<id>/model``) or an in-memory ``EntroAD`` (no ablations then).
    ``datasets``: names under ``<data.root>/processed``, folders or loaded datasets; default
    the suite's targets, else ``evaluation.targets``. ``ablations``: ``"entropy=none,routing=none"``
    or ``{"name": {"entropy": "none"}}`` — evaluated on the same batches as the full model.
    """
    params = params or load_params()
    cfg = params.evaluation
    if datasets is None or len(datasets) == 0:
        datasets = suite_targets(params, suite) if suite else list(cfg.targets)
    if not datasets:
        raise ConfigError("no datasets to evaluate: pass --data NAME, --suite NAME or set evaluation.targets")
    variants = dict(ablations) if isinstance(ablations, Mapping) else parse_ablations(ablations)
    loaded = [resolve_dataset(d, params) for d in datasets]
    names = [d.name for d, _ in loaded]
    if len(set(names)) != len(names):
        raise ConfigError(f"dataset listed twice: {names}")

    if isinstance(model, str | Path):
        with resolved_checkpoint(model, params) as ckpt:
            models = load_models(ckpt, variants, params, device, weights)
        source = str(model)
    else:
        if variants:
            raise InputError("ablations need a checkpoint folder or URI (variants are rebuilt from it)")
        models, source = {BASE_VARIANT: model.eval()}, "<in-memory model>"

    result = run_evaluation(models, loaded, params, source, variants, suite=suite, progress=progress)
    if out_dir is not None:
        write_results(result, out_dir, report=report)
    return result


def run_evaluation(
    models: Mapping[str, Any],
    datasets: Sequence[tuple[ProcessedDataset, Path]],
    params: Params,
    source: str,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    suite: str | None = None,
    progress: bool = True,
) -> EvaluationResult:
    """Score every dataset with every model variant in one pass over the images."""
    cfg = params.evaluation
    base = models[BASE_VARIANT]
    info = base.backbone_info
    for name, m in models.items():
        if m.image_size != base.image_size or m.backbone_info.weights_sha256 != info.weights_sha256:
            raise EvaluationError(f"ablation variant {name!r} does not share the full model's backbone/image size")
    if info.random_init:
        from entroad.backbone import RANDOM_INIT_BANNER

        log.warning(RANDOM_INIT_BANNER.format(name=info.name))
    trained_on = (getattr(base, "checkpoint_config", None) or {}).get("trained_on") or {}
    notes: list[str] = []
    if suite:
        expected = params.evaluation.suites[suite].train
        if trained_on.get("dataset") and trained_on["dataset"] != expected:
            notes.append(
                f"Suite {suite!r} expects a model trained on {expected!r}, but this one was trained on "
                f"{trained_on['dataset']!r}."
            )
            log.warning(notes[-1])

    settings = {
        "split": cfg.split,
        "batch_size": cfg.batch_size,
        "max_fpr": cfg.max_fpr,
        "pixel_metrics": cfg.pixel_metrics,
        "pixel_bins": cfg.pixel_bins,
        "min_per_label": cfg.min_per_label,
        "operating_point": {"sensitivity": cfg.sensitivity} if cfg.sensitivity is not None else {"specificity": cfg.specificity},
        "image_size": int(base.image_size),
        "device": str(base.device),
        "notes": notes,
    }
    runs: dict[str, list[DatasetResult]] = {n: [] for n in models}
    plans = []
    for ds, path in datasets:
        records = ds.select(cfg.split)
        if not records:
            splits = sorted({r.split for r in ds.records})
            raise EvaluationError(
                f"dataset {ds.name!r} has no images in split {cfg.split!r} (has {splits}); "
                "set evaluation.split (e.g. --set evaluation.split=all)"
            )
        plans.append((ds, path, records))
    total = sum(len(r) for _, _, r in plans)
    dev = base.device
    with progress_bar("[bold]evaluate[/] {task.fields[name]}", enabled=progress) as bar:
        task = bar.add_task("evaluate", total=total, name="")
        for ds, path, records in plans:
            bar.update(task, name=ds.name)
            version = _data_version(ds, path)
            in_domain = bool(trained_on) and (
                trained_on.get("dataset") == ds.name or trained_on.get("data_version") == version
            )
            reference = reference_key(ds.name, cfg.reference_names)
            tds = EvalImageDataset(ds, base.image_size, info.mean, info.std, records=records)
            loader = torch.utils.data.DataLoader(
                tds,
                batch_size=cfg.batch_size,
                shuffle=False,
                num_workers=cfg.num_workers,
                pin_memory=dev.type == "cuda",
                persistent_workers=False,
            )
            accs = {
                n: _DatasetRun(ds, records, cfg, cfg.report_examples if n == BASE_VARIANT else 0, cfg.exact_pixel_limit)
                for n in models
            }
            for batch in _batches(loader):
                images = batch["image"].to(dev, non_blocking=True)
                if images.shape[-1] != base.image_size:
                    raise EvaluationError(
                        f"dataset {ds.name!r}: batch of {images.shape[-1]} px for a model of {base.image_size} px"
                    )
                for n, m in models.items():
                    names = list(batch["cls"]) if m.cfg.use_class_names else None
                    accs[n].add(m.predict(images, names), batch)
                bar.advance(task, images.shape[0])
            for n in models:
                runs[n].append(accs[n].result(version, in_domain, reference, settings))

    def make(name: str) -> EvaluationResult:
        m = models[name]
        return EvaluationResult(
            model=ModelIdentity.of(m, source, name, (variants or {}).get(name)),
            datasets=runs[name],
            settings=settings,
            suite=suite,
        )

    result = make(BASE_VARIANT)
    result.variants = {n: make(n) for n in models if n != BASE_VARIANT}
    return result


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------
CSV_COLUMNS = [
    "variant", "dataset", "class", "level", "n_images", "n_normal", "n_anomalous", "n_pixel_images",
    *METRIC_KEYS, "excluded", "random_init", "backbone", "weights_sha256", "data_version",
]


def results_rows(result: EvaluationResult) -> list[dict[str, Any]]:
    """Flat rows (every variant, dataset mean rows and class rows) for the CSV."""
    rows = []
    for name, res in [(BASE_VARIANT, result), *result.variants.items()]:
        for d in res.datasets:
            common = {
                "variant": name,
                "random_init": res.model.random_init,
                "backbone": res.model.backbone,
                "weights_sha256": res.model.weights_sha256,
                "data_version": d.data_version,
            }
            rows.append({**d.row(), **common, "level": "dataset"})
            rows.extend({**c.row(), **common, "level": "class"} for c in d.classes)
    return rows


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None) -> str:
    headers = list(headers or columns)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c)).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines)


SHORT = {
    "image_auroc": "I-AUROC", "image_ap": "I-AP", "image_f1max": "I-F1max", "pixel_auroc": "P-AUROC",
    "pixel_ap": "P-AP", "pixel_f1max": "P-F1max", "pixel_aupro": "AUPRO",
}


def results_markdown(result: EvaluationResult) -> str:
    out = io.StringIO()
    m = result.model
    out.write("# EntroAD evaluation results\n\n")
    if m.random_init:
        out.write(
            f"> **RANDOM-INIT BACKBONE** ({m.backbone}): these numbers only show that the pipeline runs; "
            "they say nothing about real anomaly detection.\n\n"
        )
    out.write(
        f"Model `{m.source}` — backbone {m.backbone} ({m.pretrained or 'random init'}), weights "
        f"`{m.weights_sha256[:28]}…`, {m.image_size} px. Split `{result.settings['split']}`. Metrics in %, "
        "per-class mean; — = undefined (see exclusions).\n\n"
    )
    cols = ["dataset", "n_images", *METRIC_KEYS]
    out.write("## Per dataset\n\n")
    out.write(markdown_table(result.per_dataset_table(), cols, ["dataset", "images", *(SHORT[k] for k in METRIC_KEYS)]))
    out.write("\n\n## Per class\n\n")
    out.write(
        markdown_table(
            result.per_class_table(),
            ["dataset", "class", "n_normal", "n_anomalous", *METRIC_KEYS],
            ["dataset", "class", "normal", "anomalous", *(SHORT[k] for k in METRIC_KEYS)],
        )
    )
    excl = [{"dataset": d.name, **e} for d in result.datasets for e in d.exclusions]
    if excl:
        out.write("\n\n## Exclusions\n\n")
        out.write(markdown_table(excl, ["dataset", "class", "metrics", "reason"]))
    if result.variants:
        out.write("\n\n## Ablation (inference-time: same weights, options changed)\n\n")
        cols = ["variant", "dataset", *METRIC_KEYS]
        out.write(markdown_table(result.ablation_table(), cols, ["variant", "dataset", *(SHORT[k] for k in METRIC_KEYS)]))
    out.write("\n")
    return out.getvalue()


def scores_rows(result: EvaluationResult) -> Iterator[dict[str, Any]]:
    for name, res in [(BASE_VARIANT, result), *result.variants.items()]:
        for d in res.datasets:
            for img, cls, y, s in zip(d.images, d.image_classes, d.labels, d.scores, strict=True):
                yield {"variant": name, "dataset": d.name, "class": cls, "image": img, "label": int(y), "score": float(s)}


def write_results(result: EvaluationResult, out_dir: str | Path, report: bool = True) -> Path:
    """``results.{csv,json,md}``, ``scores.csv`` (per image) and, unless ``report=False``,
    ``report.html`` + ``report.md`` + ``figures/*.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.output_dir = out
    (out / "results.json").write_text(json.dumps(result.to_json(), indent=2, default=_json_default) + "\n")
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(results_rows(result))
    with open(out / "scores.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["variant", "dataset", "class", "image", "label", "score"], lineterminator="\n")
        w.writeheader()
        w.writerows(scores_rows(result))
    (out / "results.md").write_text(results_markdown(result))
    if report:
        from entroad.report import write_report

        write_report(result, out)
    return out


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
