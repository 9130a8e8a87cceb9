"""Evaluation report: one self-contained HTML page (figures embedded as base64 PNG), the same
content as Markdown, and every figure as a PNG in ``figures/``.

Driven only by an :class:`~entroad.evaluation.results.EvaluationResult` (tables, curves, scores and the
few example maps it keeps), so it can be rebuilt or tested without a model.
"""


from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from entroad.evaluation.figures import make_figures, slug
from entroad.evaluation.metrics import ANCHOR_AUPRO_KEY, METRIC_KEYS
from entroad.evaluation.reference import REFERENCE, REFERENCE_TITLES
from entroad.evaluation.results import EXAMPLE_KINDS, EvaluationResult
from entroad.evaluation.tables import SHORT, fmt

RANDOM_INIT_TEXT = (
    "RANDOM-INIT BACKBONE ({name}): no pretrained CLIP weights were used. These numbers and "
    "pictures only show that the pipeline runs; they say nothing about real anomaly detection."
)


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
        ["AUPRO definition", f"{result.settings.get('aupro', 'official')} (FPR ≤ {result.settings.get('max_fpr', 0.3):g}); "
                             "the METHOD §9 comparison uses anomalyclip, as its reference numbers do"],
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
             *(fmt(d.metrics.get(k)) for k in METRIC_KEYS), d.data_version[:24]]
        )
    return head, rows


def reference_tables(result: EvaluationResult) -> list[tuple[str, Table]]:
    """Our numbers beside METHOD.md §9's for datasets that match a reference row."""

    keys = ["image_auroc", "image_ap", "pixel_auroc", "pixel_aupro"]
    # our AUPRO by the anchors' definition (AnomalyCLIP's cal_pro_score), whatever evaluation.aupro is
    ours_keys = [ANCHOR_AUPRO_KEY if k == "pixel_aupro" else k for k in keys]
    head = ["method", *(SHORT[k] for k in keys[:-1]), "AUPRO (AnomalyCLIP def.)"]
    out = []
    for d in result.datasets:
        if not d.reference:
            continue
        rows = [["ours" + (" (random-init!)" if result.random_init else ""), *(fmt(d.metrics.get(k)) for k in ours_keys)]]
        for method, vals in REFERENCE[d.reference].items():
            rows.append([method, *(fmt(vals.get(k)) for k in keys)])
        out.append((f"{d.name} vs {REFERENCE_TITLES[d.reference]}", (head, rows)))
    return out


def class_table(result: EvaluationResult) -> Table:
    head = ["dataset", "class", "normal", "anomalous", *(SHORT[k] for k in METRIC_KEYS)]
    rows = [
        [c.dataset, c.cls, str(c.n_normal), str(c.n_anomalous), *(fmt(c.metrics.get(k)) for k in METRIC_KEYS)]
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
             str(op.tn), str(op.fn), *(fmt(v) + "%" if v is not None else "—" for v in pct)]
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
            cells.append(fmt(v) + (f" ({dv:+.1f})" if dv is not None else ""))
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

