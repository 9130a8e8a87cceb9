"""Flat rows and Markdown tables of an evaluation result (``results.csv``, ``results.md``)."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from entroad.evaluation.metrics import METRIC_KEYS
from entroad.evaluation.results import EvaluationResult
from entroad.model_source import BASE_VARIANT

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


def fmt(v: Any, digits: int = 1) -> str:
    """A metric cell: one decimal by default, — when undefined."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None) -> str:
    headers = list(headers or columns)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c)).replace("|", "\\|") for c in columns) + " |")
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

