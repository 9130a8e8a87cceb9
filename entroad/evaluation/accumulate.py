"""Streaming accumulation of one model variant's outputs over one dataset: image scores,
pixel statistics (bounded memory) and the few example maps the report keeps."""

from __future__ import annotations

import heapq
from itertools import count
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from entroad.data.manifest import ProcessedDataset
from entroad.errors import EvaluationError, UndefinedMetricError
from entroad.evaluation.metrics import (
    ANCHOR_AUPRO_KEY,
    IMAGE_KEYS,
    METRIC_KEYS,
    PIXEL_KEYS,
    image_metrics,
    operating_point,
)
from entroad.evaluation.pixel_metrics import PixelMetricAccumulator
from entroad.evaluation.results import DISPLAY_SIZE, EXAMPLE_KINDS, ClassResult, DatasetResult, Example


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




class DatasetRun:
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
                    pm = acc.compute(cfg.max_fpr, cfg.aupro)
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
        for group, keys in (("image", IMAGE_KEYS), ("pixel", (*PIXEL_KEYS, ANCHOR_AUPRO_KEY))):
            reasons = [(c.cls, c.excluded[group]) for c in class_results if group in c.excluded]
            if len(reasons) == len(class_results) > 1 and len({r for _, r in reasons}) == 1:
                reasons = [("(all)", reasons[0][1])]  # one line instead of one per class
            exclusions.extend({"class": c, "metrics": group, "reason": r} for c, r in reasons)
            for k in keys:
                vals = [c.metrics[k] for c in class_results if c.metrics.get(k) is not None]
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
