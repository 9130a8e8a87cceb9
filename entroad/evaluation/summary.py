"""Evaluation results as a pipeline reports them: per-dataset results merged into one
cross-domain result, a plain-dict summary of it (target means as logged to MLflow), and that
summary as a short Markdown table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from entroad.errors import EvaluationError
from entroad.evaluation.results import EvaluationResult
from entroad.evaluation.writers import write_results
from entroad.tracking.runs import target_means

SUMMARY_METRICS = ("image_auroc", "image_ap", "pixel_auroc", "pixel_aupro")


def merge_results(results: Sequence[EvaluationResult]) -> EvaluationResult:
    """One result holding every dataset of ``results`` (evaluated one dataset at a time with the
    same model and settings); the model and settings are those of the first."""
    if not results:
        raise EvaluationError("no evaluation results to merge: evaluate at least one dataset")
    first = results[0]
    return EvaluationResult(model=first.model, datasets=[d for r in results for d in r.datasets], settings=first.settings)


def summarize(result: EvaluationResult, out_dir: str | Path) -> dict[str, Any]:
    """A JSON-ready summary of a written result: where it is, and every dataset's metrics."""
    out = Path(out_dir)
    return {
        "out_dir": str(out.resolve()),
        "report": str((out / "report.html").resolve()),
        "random_init": result.random_init,
        "datasets": {d.name: {"domain": d.domain, "data_version": d.data_version, "in_domain": d.in_domain,
                              "n_images": d.n_images, "metrics": dict(d.metrics)} for d in result.datasets},
        "target_means": target_means(result),
    }


def write_merged(results: Sequence[EvaluationResult], out_dir: str | Path) -> dict[str, Any]:
    """Merge per-dataset results, write the results folder and report, return the summary."""
    merged = merge_results(results)
    write_results(merged, out_dir)
    return summarize(merged, out_dir)


def summary_markdown(summary: dict[str, Any]) -> str:
    """The short table of a :func:`summarize` summary (the pipeline's run artifact)."""
    head = "| dataset | domain | data version | " + " | ".join(SUMMARY_METRICS) + " |"
    lines = ["## EntroAD cross-domain evaluation", ""]
    if summary["random_init"]:
        lines += ["> **RANDOM-INIT BACKBONE**: these numbers only show that the pipeline runs.", ""]
    lines += [head, "|---|---|---|" + "---|" * len(SUMMARY_METRICS)]
    for name, d in summary["datasets"].items():
        vals = [d["metrics"].get(k) for k in SUMMARY_METRICS]
        cells = ["—" if v is None else f"{v:.1f}" for v in vals]
        lines.append(f"| {name}{' (in-domain)' if d['in_domain'] else ''} | {d['domain']} | `{d['data_version'][:14]}` | "
                     + " | ".join(cells) + " |")
    means = summary.get("target_means", {})
    lines.append("| **mean (targets)** | | | " + " | ".join("—" if means.get(k) is None else f"**{means[k]:.1f}**"
                                                      for k in SUMMARY_METRICS) + " |")
    lines += ["", f"Report: `{summary['report']}`"]
    return "\n".join(lines) + "\n"
