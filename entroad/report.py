"""Evaluation report: one self-contained HTML page (figures embedded as base64 PNG), the same
content as Markdown, and every figure as a PNG in ``figures/``.

Driven only by an :class:`~entroad.evaluate.EvaluationResult` (tables, curves, scores and the
few example maps it keeps), so it can be rebuilt or tested without a model.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # headless: reports are written on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from entroad.metrics import METRIC_KEYS  # noqa: E402

if TYPE_CHECKING:
    from entroad.evaluate import DatasetResult, EvaluationResult, Example

SHORT = {
    "image_auroc": "I-AUROC", "image_ap": "I-AP", "image_f1max": "I-F1max", "pixel_auroc": "P-AUROC",
    "pixel_ap": "P-AP", "pixel_f1max": "P-F1max", "pixel_aupro": "AUPRO",
}
RANDOM_INIT_TEXT = (
    "RANDOM-INIT BACKBONE ({name}): no pretrained CLIP weights were used. These numbers and "
    "pictures only show that the pipeline runs; they say nothing about real anomaly detection."
)
DPI = 100
NO_THRESHOLD_REASON = "see the dataset notes"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


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
        spec = _fmt(None if op.specificity is None else 100 * op.specificity)
        sens = _fmt(None if op.sensitivity is None else 100 * op.sensitivity)
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
        from entroad.data.torch_dataset import read_rgb

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
        from entroad.evaluate import EXAMPLE_KINDS

        for kind, title in EXAMPLE_KINDS.items():
            exs = d.examples.get(kind) or []
            if threshold is None:
                title = f"{title.split(' (')[0]} (no operating point: {NO_THRESHOLD_REASON})"
            if p := examples_figure(exs, f"{d.name}: {title}", threshold, fig_dir / f"{s}_{kind}.png"):
                figs[f"{d.name}/{kind}"] = p
    if p := ablation_figure(result, fig_dir / "ablation.png"):
        figs["ablation"] = p
    return figs


# --------------------------------------------------------------------------------------------
# Tables (shared by HTML and Markdown): lists of (header, rows of cell strings)
# --------------------------------------------------------------------------------------------
Table = tuple[list[str], list[list[str]]]


def identity_table(result: EvaluationResult) -> Table:
    m = result.model
    trained = m.trained_on or {}
    rows = [
        ["model", m.source],
        ["backbone", f"{m.backbone} ({m.pretrained or 'random init'})"],
        ["random-init backbone", "YES" if m.random_init else "no"],
        ["weights SHA-256", m.weights_sha256],
        ["image size", f"{m.image_size} px"],
        ["trained on", f"{trained.get('dataset', '?')} [{trained.get('data_version', '?')}]" if trained else "unknown"],
        ["options", ", ".join(f"{k}={m.options.get(k)}" for k in ("entropy", "routing", "branches", "confidence", "alpha", "sigma"))],
        ["split / batch", f"{result.settings.get('split')} / {result.settings.get('batch_size')}"],
        ["evaluated", result.created],
    ]
    if result.suite:
        rows.append(["suite", result.suite])
    return ["", ""], rows


def summary_table(result: EvaluationResult) -> Table:
    head = ["dataset", "domain", "images (normal / anomalous)", *(SHORT[k] for k in METRIC_KEYS), "data version"]
    rows = []
    for d in result.datasets:
        tag = " (in-domain)" if d.in_domain else ""
        rows.append(
            [d.name + tag, d.domain, f"{d.n_images} ({d.n_normal} / {d.n_anomalous})",
             *(_fmt(d.metrics.get(k)) for k in METRIC_KEYS), d.data_version[:24]]
        )
    return head, rows


def reference_tables(result: EvaluationResult) -> list[tuple[str, Table]]:
    """Our numbers beside METHOD.md §9's for datasets that match a reference row."""
    from entroad.evaluate import REFERENCE, REFERENCE_TITLES

    keys = ["image_auroc", "image_ap", "pixel_auroc", "pixel_aupro"]
    out = []
    for d in result.datasets:
        if not d.reference:
            continue
        rows = [["ours" + (" (random-init!)" if result.random_init else ""), *(_fmt(d.metrics.get(k)) for k in keys)]]
        for method, vals in REFERENCE[d.reference].items():
            rows.append([method, *(_fmt(vals.get(k)) for k in keys)])
        out.append((f"{d.name} vs {REFERENCE_TITLES[d.reference]}", (["method", *(SHORT[k] for k in keys)], rows)))
    return out


def class_table(result: EvaluationResult) -> Table:
    head = ["dataset", "class", "normal", "anomalous", *(SHORT[k] for k in METRIC_KEYS)]
    rows = [
        [c.dataset, c.cls, str(c.n_normal), str(c.n_anomalous), *(_fmt(c.metrics.get(k)) for k in METRIC_KEYS)]
        for d in result.datasets
        for c in d.classes
    ]
    return head, rows


def operating_table(result: EvaluationResult) -> Table:
    head = ["dataset", "target", "threshold", "TP", "FP", "TN", "FN", "sensitivity", "specificity", "precision"]
    rows = []
    for d in result.datasets:
        op = d.operating_point
        if op is None:
            rows.append([d.name, "—", "—", "", "", "", "", "", "", ""])
            continue
        pct = [None if v is None else 100 * v for v in (op.sensitivity, op.specificity, op.precision)]
        rows.append(
            [d.name, f"{op.target} ≥ {100 * op.target_value:g}%", f"{op.threshold:.6g}", str(op.tp), str(op.fp),
             str(op.tn), str(op.fn), *(_fmt(v) + "%" if v is not None else "—" for v in pct)]
        )
    return head, rows


def exclusion_table(result: EvaluationResult) -> Table:
    rows = [[d.name, e["class"], e["metrics"], e["reason"]] for d in result.datasets for e in d.exclusions]
    return ["dataset", "class", "metrics", "reason"], rows


def ablation_table(result: EvaluationResult) -> Table:
    rows = []
    for r in result.ablation_table():
        cells = []
        for k in METRIC_KEYS:
            v, dv = r[k], r[f"delta_{k}"]
            cells.append(_fmt(v) + (f" ({dv:+.1f})" if dv is not None else ""))
        rows.append([r["variant"], r["dataset"], *cells])
    return ["variant", "dataset", *(SHORT[k] for k in METRIC_KEYS)], rows


def precision_note(result: EvaluationResult) -> str:
    parts = []
    for d in result.datasets:
        if d.pixel_exact is None:
            continue
        if d.pixel_exact:
            parts.append(f"{d.name}: exact")
        else:
            worst = max(d.pixel_bound.values()) if d.pixel_bound else 0.0
            parts.append(f"{d.name}: binned ({result.settings.get('pixel_bins')} bins), |error| ≤ {worst:.2g} points")
    return "; ".join(parts)


METHOD_NOTES = [
    "Metrics are in percent; a dataset's value is the mean over its classes. Classes where a metric is "
    "undefined are excluded from that mean and listed under Exclusions.",
    "AUROC ties count 1/2; AP is the step-wise (non-interpolated) average precision; F1-max is the best F1 "
    "over all thresholds.",
    "AUPRO: regions are 8-connected components of each ground-truth mask; the per-region overlap curve is "
    "integrated up to the FPR limit (over all normal pixels) and divided by it (MVTec AD's definition).",
    "Binned pixel metrics are the exact metrics of scores quantised to fixed bins over [0, 1]; the stated "
    "bound is a rigorous, data-dependent bound on the distance to the unquantised value.",
    "The operating point is chosen on the evaluated images themselves (an image is flagged when its "
    "score > threshold); on new data the achieved specificity can differ.",
]


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
main{max-width:1250px;margin:0 auto;padding:20px 28px 60px}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:20px;margin:34px 0 10px;border-bottom:2px solid #d9dee6;padding-bottom:4px}
h3{font-size:16px;margin:22px 0 8px}
.banner{background:#b3261e;color:#fff;padding:14px 18px;border-radius:6px;font-weight:600;margin:12px 0}
.warn{background:#fff4d6;border-left:5px solid #e0a100;padding:8px 12px;margin:8px 0;border-radius:3px}
.muted{color:#5b6575;font-size:13px}
table{border-collapse:collapse;background:#fff;margin:6px 0 14px;font-size:13px;box-shadow:0 1px 2px #0001}
th,td{border:1px solid #dde2ea;padding:5px 9px;text-align:right;white-space:nowrap}
th{background:#eef1f5;font-weight:600}td.t,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafbfc}
table.kv td{text-align:left;white-space:normal;word-break:break-all}
figure{margin:10px 0 22px;background:#fff;padding:10px;box-shadow:0 1px 2px #0001;border-radius:4px}
figure img{max-width:100%;display:block}figcaption{font-size:13px;color:#5b6575;margin-top:6px}
nav a{margin-right:14px;font-size:14px}
.tw{overflow-x:auto;max-width:100%}
"""


def _html_table(table: Table, cls: str = "") -> str:
    head, rows = table
    h = "" if not any(head) else "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
    body = "".join("<tr>" + "".join(_html_cell(c) for c in r) + "</tr>" for r in rows)
    # Wrapped so that a wide table (many classes, long names) scrolls instead of overflowing.
    return f'<div class="tw"><table class="{cls}">{h}{body}</table></div>'


_NUMERIC = re.compile(r"^[-+]?[\d.]+(%| \([-+][\d.]+\))?$|^—$")


def _html_cell(value: Any) -> str:
    text = str(value)
    align = "" if _NUMERIC.match(text) else " class='t'"  # numbers right, text left
    return f"<td{align}>{html.escape(text)}</td>"


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


FIGURE_CAPTIONS = {
    "curves": "ROC and precision-recall curves of image scores; pixel ROC and per-region-overlap curves (grey: "
    "the FPR range AUPRO integrates).",
    "scores": "Distribution of image scores for normal and anomalous images; dashed: the operating threshold.",
    "most_anomalous": "Most anomalous images. Green: ground-truth outline. Entropy z: standardised structural "
    "entropy density; routing r: share of each patch sent to the diffuse path; confidence: how much the "
    "adapted branch (vs CLIP's prior) decides the fused map.",
    "false_positives": "Highest-scoring normal images (FP when above the threshold).",
    "false_negatives": "Lowest-scoring anomalous images (FN when at or below the threshold).",
}


def render_html(result: EvaluationResult, figures: Mapping[str, Path]) -> str:
    from entroad.evaluate import EXAMPLE_KINDS

    m = result.model
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>EntroAD evaluation — {html.escape(', '.join(d.name for d in result.datasets))}</title>",
        f"<style>{CSS}</style></head><body><main>",
        "<h1>EntroAD cross-domain evaluation</h1>",
        f"<div class='muted'>{html.escape(result.created)} · model {html.escape(m.source)}</div>",
    ]
    if m.random_init:
        parts.append(f"<div class='banner'>{html.escape(RANDOM_INIT_TEXT.format(name=m.backbone))}</div>")
    for note in result.settings.get("notes", []):
        parts.append(f"<div class='warn'>{html.escape(note)}</div>")
    nav = ["<a href='#summary'>Summary</a>", "<a href='#operating'>Operating point</a>", "<a href='#classes'>Per class</a>"]
    if result.variants:
        nav.append("<a href='#ablation'>Ablation</a>")
    nav += [f"<a href='#ds-{slug(d.name)}'>{html.escape(d.name)}</a>" for d in result.datasets]
    nav.append("<a href='#notes'>Method notes</a>")
    parts.append("<nav>" + "".join(nav) + "</nav>")

    parts.append("<h2 id='summary'>Summary</h2>")
    parts.append(
        "<p class='muted'>Metrics in %, mean over classes; — = undefined (see exclusions). Pixel metrics: "
        + html.escape(precision_note(result) or "none computed") + ".</p>"
    )
    parts.append(_html_table(summary_table(result)))
    for d in result.datasets:
        for note in d.notes:
            parts.append(f"<div class='warn'><b>{html.escape(d.name)}</b>: {html.escape(note)}</div>")
    refs = reference_tables(result)
    if refs:
        parts.append("<h3>Beside the published zero-shot numbers (METHOD.md §9)</h3>")
        if m.random_init:
            parts.append("<div class='warn'>A random-init backbone cannot be compared with these numbers.</div>")
        for title, table in refs:
            parts.append(f"<p><b>{html.escape(title)}</b></p>" + _html_table(table))
    parts.append("<h3>Model</h3>" + _html_table(identity_table(result), "kv"))

    parts.append("<h2 id='operating'>Operating point</h2>")
    parts.append(
        "<p class='muted'>The threshold that reaches the chosen specificity (or sensitivity) on the evaluated "
        "images of each dataset, and the confusion counts it gives: flag an image when score &gt; threshold.</p>"
    )
    parts.append(_html_table(operating_table(result)))

    parts.append("<h2 id='classes'>Per class</h2>" + _html_table(class_table(result)))
    excl = exclusion_table(result)
    if excl[1]:
        parts.append("<h3>Exclusions</h3>" + _html_table(excl))

    if result.variants:
        parts.append("<h2 id='ablation'>Ablation</h2>")
        parts.append(
            "<p class='muted'>Inference-time ablation: the same learnable weights with one option changed; "
            "in brackets the difference to the full model in points.</p>"
        )
        parts.append(_html_table(ablation_table(result)))
        if "ablation" in figures:
            parts.append(_img(figures["ablation"], "Ablation: metrics per variant"))

    for d in result.datasets:
        parts.append(f"<h2 id='ds-{slug(d.name)}'>{html.escape(d.name)}</h2>")
        parts.append(
            f"<p class='muted'>{d.domain} · {d.n_images} images ({d.n_normal} normal, {d.n_anomalous} anomalous) · "
            f"data version {html.escape(d.data_version)}</p>"
        )
        for kind in ("curves", "scores", *EXAMPLE_KINDS):
            key = f"{d.name}/{kind}"
            if key in figures:
                parts.append(_img(figures[key], FIGURE_CAPTIONS[kind]))

    parts.append("<h2 id='notes'>Method notes</h2><ul>")
    parts += [f"<li>{html.escape(n)}</li>" for n in METHOD_NOTES]
    parts.append("</ul></main></body></html>")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------
def _md_table(table: Table) -> str:
    head, rows = table
    head = [h or " " for h in head]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def render_markdown(result: EvaluationResult, figures: Mapping[str, Path], base: Path) -> str:
    from entroad.evaluate import EXAMPLE_KINDS

    m = result.model
    out = ["# EntroAD cross-domain evaluation\n", f"{result.created} · model `{m.source}`\n"]
    if m.random_init:
        out.append(f"> **{RANDOM_INIT_TEXT.format(name=m.backbone)}**\n")
    out += [f"> {n}\n" for n in result.settings.get("notes", [])]
    out.append("## Summary\n")
    out.append(f"Metrics in %, mean over classes; — = undefined. Pixel metrics: {precision_note(result) or 'none'}.\n")
    out.append(_md_table(summary_table(result)))
    for d in result.datasets:
        out += [f"- **{d.name}**: {n}\n" for n in d.notes]
    for title, table in reference_tables(result):
        out.append(f"\n**{title}** (METHOD.md §9)\n\n" + _md_table(table))
    out.append("\n### Model\n\n" + _md_table(identity_table(result)))
    out.append("\n## Operating point\n\nFlag an image when score > threshold.\n\n" + _md_table(operating_table(result)))
    out.append("\n## Per class\n\n" + _md_table(class_table(result)))
    excl = exclusion_table(result)
    if excl[1]:
        out.append("\n### Exclusions\n\n" + _md_table(excl))
    if result.variants:
        out.append("\n## Ablation\n\nSame weights, one option changed; (difference to the full model).\n\n")
        out.append(_md_table(ablation_table(result)))
        if "ablation" in figures:
            out.append(f"\n![ablation]({figures['ablation'].relative_to(base).as_posix()})\n")
    for d in result.datasets:
        out.append(f"\n## {d.name}\n")
        for kind in ("curves", "scores", *EXAMPLE_KINDS):
            key = f"{d.name}/{kind}"
            if key in figures:
                out.append(f"\n{FIGURE_CAPTIONS[kind]}\n\n![{kind}]({figures[key].relative_to(base).as_posix()})\n")
    out.append("\n## Method notes\n\n" + "".join(f"- {n}\n" for n in METHOD_NOTES))
    return "\n".join(out)


def write_report(result: EvaluationResult, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained), ``report.md`` and ``figures/*.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = make_figures(result, out / "figures")
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(render_html(result, figures), encoding="utf-8")
    md_path.write_text(render_markdown(result, figures, out), encoding="utf-8")
    return html_path, md_path

