"""Figures of the evaluation report (PNG, 256-colour palette): ROC/PR/PRO curves, score
histograms, example grids and the ablation chart."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: reports are written on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from entroad.data.torch_dataset import read_rgb
from entroad.evaluation.metrics import METRIC_KEYS  # noqa: E402
from entroad.evaluation.results import EXAMPLE_KINDS, DatasetResult, EvaluationResult, Example  # noqa: E402
from entroad.evaluation.tables import SHORT, fmt  # noqa: E402

DPI = 100
NO_THRESHOLD_REASON = "see the dataset notes"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------
def _save(fig, path: Path, photo: bool = False) -> Path:
    """PNG with a 256-colour palette: ~4x smaller than RGB, so a report with many
    datasets stays a few MB while every figure is embedded. ``photo`` (image grids with
    smooth heat maps) dithers, else the palette shows false contour lines in the overlays."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, format="png")
    plt.close(fig)
    img = Image.open(buf).convert("RGB")
    dither = Image.Dither.FLOYDSTEINBERG if photo else Image.Dither.NONE
    img.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=dither).save(path, optimize=True)
    return path


def curves_figure(d: DatasetResult, max_fpr: float, path: Path) -> Path | None:
    """Image ROC and PR, pixel ROC and PRO curves, one line per class."""
    classes = [c for c in d.classes if c.image_curves is not None or c.pixel_curves is not None]
    if not classes:
        return None
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.3), layout="constrained")
    cmap = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
    panels = [
        ("Image ROC", "false positive rate", "true positive rate", "image_curves", "roc"),
        ("Image PR", "recall", "precision", "image_curves", "pr"),
        ("Pixel ROC", "false positive rate", "true positive rate", "pixel_curves", "roc"),
        (f"Per-region overlap (AUPRO to FPR {max_fpr:g})", "false positive rate", "per-region overlap", "pixel_curves", "pro"),
    ]
    for ax, (title, xl, yl, attr, kind) in zip(axes, panels, strict=True):
        drawn = False
        for i, c in enumerate(classes):
            curves = getattr(c, attr)
            xy = getattr(curves, kind) if curves is not None else None
            if xy is None:
                continue
            ax.plot(xy[0], xy[1], color=cmap(i % cmap.N), lw=1.4, label=c.cls)
            drawn = True
        if kind == "pro":
            ax.axvspan(0, max_fpr, color="0.92", zorder=0)
            ax.set_xlim(0, min(1.0, max_fpr * 2))
        else:
            ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        if kind == "roc":
            ax.plot([0, 1], [0, 1], ls=":", color="0.5", lw=1)
        ax.set_title(title, fontsize=11)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        if not drawn:
            ax.text(0.5, 0.5, "undefined\n(see exclusions)", ha="center", va="center", color="0.4", transform=ax.transAxes)
    handles, labels = axes[0].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[2].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right center", fontsize=8, title="class")
    fig.suptitle(f"{d.name}: curves per class", fontsize=12)
    return _save(fig, path)


def histogram_figure(d: DatasetResult, path: Path) -> Path | None:
    """Image-score histograms of normal vs anomalous images, with the operating threshold."""
    if d.scores.size == 0:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4), layout="constrained")
    lo, hi = float(d.scores.min()), float(d.scores.max())
    bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 41)
    for label, name, color in ((0, "normal", "tab:blue"), (1, "anomalous", "tab:red")):
        s = d.scores[d.labels == label]
        if s.size:
            ax.hist(s, bins=bins, alpha=0.55, color=color, label=f"{name} ({s.size})")
    op = d.operating_point
    if op is not None:
        spec = fmt(None if op.specificity is None else 100 * op.specificity)
        sens = fmt(None if op.sensitivity is None else 100 * op.sensitivity)
        ax.axvline(op.threshold, color="k", ls="--", lw=1.2,
                   label=f"threshold {op.threshold:.4g} (spec. {spec}%, sens. {sens}%)")
    ax.set_xlabel("image anomaly score")
    ax.set_ylabel("images")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"{d.name}: image scores", fontsize=11)
    ax.legend(fontsize=8, loc="upper left", framealpha=0.9)
    return _save(fig, path)


def _display_image(ex: Example, size: int) -> np.ndarray:
    from PIL import Image

    try:
        img = read_rgb(ex.image_path).resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(img)
    except Exception:  # a moved/deleted file must not break the report: grey placeholder
        return np.full((size, size, 3), 128, np.uint8)


def examples_figure(examples: Sequence[Example], title: str, threshold: float | None, path: Path) -> Path | None:
    """Rows of image | anomaly overlay | entropy | routing | confidence (GT contour in green)."""
    if not examples:
        return None
    n = len(examples)
    fig, axes = plt.subplots(n, 5, figsize=(13.5, 2.75 * n + 1.0), layout="constrained", squeeze=False)
    cols = [
        ("image + ground truth", None, None),
        ("anomaly map", plt.get_cmap("jet"), Normalize(0, 1)),
        ("entropy z (relational uncertainty)", plt.get_cmap("RdBu_r"), Normalize(-2.5, 2.5)),
        ("routing r (red diffuse, blue localised)", plt.get_cmap("coolwarm"), Normalize(0, 1)),
        ("confidence c (adapted branch)", plt.get_cmap("viridis"), Normalize(0, 1)),
    ]
    mappables: list[Any] = [None] * 5
    for row, ex in enumerate(examples):
        size = ex.anomaly_map.shape[-1]
        img = _display_image(ex, size)
        ext = (0, size, size, 0)
        panels = [
            None,
            ex.anomaly_map.astype(np.float32),
            ex.entropy_map,
            ex.routing_map,
            ex.confidence_map,
        ]
        for col, (name, cmap, norm) in enumerate(cols):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.imshow(img, extent=ext)
            elif col == 1:
                ax.imshow(img, extent=ext)
                mappables[col] = ax.imshow(panels[col], cmap=cmap, norm=norm, alpha=0.5, extent=ext)
            else:
                mappables[col] = ax.imshow(panels[col], cmap=cmap, norm=norm, interpolation="nearest", extent=ext)
            if ex.mask is not None and ex.mask.any():
                # Default contour coordinates are pixel indices (row down), which match the
                # inverted-y extent of the imshow panels above.
                ax.contour(ex.mask.astype(float), levels=[0.5], colors="lime", linewidths=1.0)
            if row == 0:
                ax.set_title(name, fontsize=9)
        verdict = ""
        if threshold is not None:
            flagged = ex.score > threshold
            verdict = {(True, 1): "TP", (True, 0): "FP", (False, 1): "FN", (False, 0): "TN"}[(flagged, ex.label)]
        axes[row, 0].set_ylabel(
            f"{ex.cls}\n{'anomalous' if ex.label else 'normal'} {verdict}\nscore {ex.score:.4f}", fontsize=8
        )
    for col in range(1, 5):
        if mappables[col] is not None:
            # A fresh mappable: the overlay's own one carries alpha 0.5 and would fade the bar.
            sm = ScalarMappable(norm=cols[col][2], cmap=cols[col][1])
            fig.colorbar(sm, ax=axes[:, col], location="bottom", shrink=0.85, pad=0.01)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path, photo=True)


def ablation_figure(result: EvaluationResult, path: Path) -> Path | None:
    rows = result.ablation_table()
    if not rows:
        return None
    datasets = [d.name for d in result.datasets]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    fig, axes = plt.subplots(len(datasets), 1, figsize=(11, 3.2 * len(datasets)), layout="constrained", squeeze=False)
    width = 0.8 / len(variants)
    x = np.arange(len(METRIC_KEYS))
    for ax, name in zip(axes[:, 0], datasets, strict=True):
        table = np.array([
            [np.nan if r[k] is None else r[k] for k in METRIC_KEYS]
            for v in variants
            for r in rows
            if r["variant"] == v and r["dataset"] == name
        ], dtype=float)
        for i, v in enumerate(variants):
            pos = x + (i - (len(variants) - 1) / 2) * width
            ax.bar(pos, table[i], width, label=v)
            for xp, val, k in zip(pos, table[i], range(len(METRIC_KEYS)), strict=True):
                if np.isnan(val) and not np.isnan(table[:, k]).all():
                    ax.text(xp, 2, "n/a", ha="center", va="bottom", fontsize=7, color="0.4", rotation=90)
        for k in np.flatnonzero(np.isnan(table).all(0)):  # an empty group reads "undefined", not "zero"
            ax.text(x[k], 50, "undefined", ha="center", va="center", fontsize=8, color="0.45", rotation=90)
        ax.set_xlim(-0.5, len(METRIC_KEYS) - 0.5)
        ax.set_xticks(x, [SHORT[k] for k in METRIC_KEYS])
        ax.set_ylim(0, 100)
        ax.set_ylabel("%")
        ax.set_title(name, fontsize=10)
    axes[0, 0].legend(fontsize=8, ncols=min(4, len(variants)))
    fig.suptitle("Ablation (inference-time, same weights)", fontsize=11)
    return _save(fig, path)


def make_figures(result: EvaluationResult, fig_dir: Path) -> dict[str, Path]:
    """Every figure of the report, keyed ``<dataset>/<kind>`` (plus ``ablation``)."""
    figs: dict[str, Path] = {}
    max_fpr = float(result.settings.get("max_fpr", 0.3))
    for d in result.datasets:
        s = slug(d.name)
        if p := curves_figure(d, max_fpr, fig_dir / f"{s}_curves.png"):
            figs[f"{d.name}/curves"] = p
        if p := histogram_figure(d, fig_dir / f"{s}_scores.png"):
            figs[f"{d.name}/scores"] = p
        threshold = d.operating_point.threshold if d.operating_point else None

        for kind, title in EXAMPLE_KINDS.items():
            exs = d.examples.get(kind) or []
            if threshold is None:
                title = f"{title.split(' (')[0]} (no operating point: {NO_THRESHOLD_REASON})"
            if p := examples_figure(exs, f"{d.name}: {title}", threshold, fig_dir / f"{s}_{kind}.png"):
                figs[f"{d.name}/{kind}"] = p
    if p := ablation_figure(result, fig_dir / "ablation.png"):
        figs["ablation"] = p
    return figs


