"""Write an evaluation result: ``results.{csv,json,md}``, ``scores.csv`` and the report."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from entroad.evaluation.report import write_report
from entroad.evaluation.results import EvaluationResult
from entroad.evaluation.tables import CSV_COLUMNS, results_markdown, results_rows, scores_rows


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
