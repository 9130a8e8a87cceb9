"""Side-by-side metrics of registered versions and runs (``entroad compare``).

A reference is a version number (``3`` or ``v3``), an alias (``@champion``, ``champion``),
``latest`` (the newest version), or an MLflow run id (an evaluation run, or a training run
whose newest evaluation is used).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from entroad.errors import TrackingError
from entroad.tracking import lineage, registry, runs
from entroad.tracking.gate import evaluation_of_version

DEFAULT_METRICS = ("image_auroc", "image_ap", "image_f1max", "pixel_auroc", "pixel_ap", "pixel_f1max", "pixel_aupro")


LATEST = "latest"
_NEXT_ALIAS = {
    registry.CHAMPION: "promote a version with `entroad promote --version N` (`entroad models` lists them), "
    "or register and evaluate one with `entroad evaluate --model runs/<train>/model --data DATASET --track`",
    registry.CHALLENGER: "the gate sets it; run `entroad promote --dry-run` on a version, or compare a version number",
    "other": "train with tracking (`entroad train --out runs/exp1`), then "
    "`entroad evaluate --model runs/exp1/model --data DATASET --track` registers it",
}


@dataclass
class Column:
    label: str
    run_id: str
    metrics: dict[str, dict[str, float]]  # dataset -> metric -> value
    data_versions: dict[str, str]
    info: dict[str, str] = field(default_factory=dict)


def resolve(client, model_name: str, ref: str) -> Column:
    ref = ref.strip()
    alias = ref.lstrip("@")
    mv = None
    if ref.startswith("@") or alias in (registry.CHAMPION, registry.CHALLENGER):
        mv = registry.version_by_alias(client, model_name, alias)
        if mv is None:
            raise TrackingError(f"{model_name!r} has no @{alias} yet: {_NEXT_ALIAS[alias if alias in _NEXT_ALIAS else 'other']}")
    elif ref == LATEST:
        found = registry.versions(client, model_name)
        if not found:
            raise TrackingError(f"{model_name!r} has no versions yet: {_NEXT_ALIAS['other']}")
        mv = found[-1]
    elif ref.lstrip("vV").isdigit():
        mv = registry.get_version(client, model_name, ref.lstrip("vV"))
    if mv is not None:
        ev = evaluation_of_version(client, mv)
        if ev is None:
            raise TrackingError(
                f"{model_name} v{mv.version} has no finished evaluation run: evaluate it with "
                f"`entroad evaluate --model models:/{model_name}/{mv.version} --data DATASET --track`"
            )
        run = client.get_run(ev.run_id)
        info = {
            "version": f"v{mv.version}",
            "aliases": ",".join(sorted(a for a, v in registry.aliases_of(client, model_name).items() if v == str(mv.version))) or "—",
            "decision": mv.tags.get(registry.TAG_DECISION, "—"),
        }
        return _column(f"v{mv.version}", run, info)
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(ref)
    except MlflowException:
        raise TrackingError(f"{ref!r} is neither a version (3, v3), an alias (@champion), 'latest' nor a run id; "
                            "`entroad models` lists the versions") from None
    if run.data.tags.get(lineage.TAG_KIND) == "train":
        found = runs.find_evaluations(client, ref, [run.info.experiment_id])
        if not found:
            raise TrackingError(f"training run {ref} has no finished evaluation run: "
                                f"`entroad evaluate --model runs:/{ref}/model --data DATASET --track`")
        run = found[0]
    return _column(ref[:8], run, {})


def _column(label: str, run, info: dict[str, str]) -> Column:
    summary = runs.evaluation_of_run(run)
    tags = run.data.tags
    info = {
        **info,
        "run": run.info.run_id[:12],
        "backbone": backbone_label(tags),
        "random-init": tags.get(lineage.TAG_RANDOM_INIT, "?"),
        "git": tags.get("git_commit", "?")[:10],
    }
    return Column(label, run.info.run_id, summary["datasets"], summary["data_versions"], info)


def backbone_label(tags: dict[str, str]) -> str:
    """``ViT-L-14-336 (openai)``; a random-init backbone says so instead of "(none)"."""
    name = tags.get("backbone.name", "?")
    if tags.get(lineage.TAG_RANDOM_INIT) == "true":
        return f"{name} (random init)"
    pretrained = tags.get("backbone.pretrained")
    return f"{name} ({pretrained})" if pretrained and pretrained not in {"None", "none", ""} else name


def rows(columns: list[Column], metrics: tuple[str, ...] = DEFAULT_METRICS) -> list[dict[str, Any]]:
    """One row per (dataset, metric) with one value per column, then the target means."""
    datasets = sorted({d for c in columns for d in c.metrics})
    out = []
    for d in datasets:
        for m in metrics:
            vals = [c.metrics.get(d, {}).get(m) for c in columns]
            if all(v is None for v in vals):
                continue
            out.append({"dataset": d, "metric": m, "values": vals})
    for m in metrics:
        vals = []
        for c in columns:
            xs = [c.metrics[d][m] for d in c.metrics if m in c.metrics[d]]
            vals.append(sum(xs) / len(xs) if xs else None)
        if any(v is not None for v in vals):
            out.append({"dataset": "(mean)", "metric": m, "values": vals})
    return out


def info_rows(columns: list[Column]) -> list[dict[str, Any]]:
    keys = [k for k in ("version", "aliases", "decision", "run", "backbone", "random-init", "git") if any(k in c.info for c in columns)]
    out = [{"dataset": "", "metric": k, "values": [c.info.get(k, "—") for c in columns]} for k in keys]
    for d in sorted({d for c in columns for d in c.data_versions}):
        out.append({"dataset": d, "metric": "data version", "values": [c.data_versions.get(d, "—")[:14] for c in columns]})
    return out


def _cell(v: Any, best: bool = False) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"**{v:.2f}**" if best else f"{v:.2f}"
    return str(v)


def to_markdown(columns: list[Column], metrics: tuple[str, ...] = DEFAULT_METRICS) -> str:
    head = "| dataset | metric | " + " | ".join(c.label for c in columns) + " |"
    lines = ["# EntroAD model comparison", "", "Metrics in %, per-class mean; **bold** = best.", "", head,
             "|---|---|" + "---|" * len(columns)]
    for r in rows(columns, metrics):
        present = [v for v in r["values"] if v is not None]
        top = max(present) if present else None
        differ = len(set(present)) > 1  # no bold when every model has the same value
        cells = [_cell(v, best=differ and v == top) for v in r["values"]]
        lines.append(f"| {r['dataset']} | {r['metric']} | " + " | ".join(cells) + " |")
    lines += ["", "| | | " + " | ".join(c.label for c in columns) + " |", "|---|---|" + "---|" * len(columns)]
    for r in info_rows(columns):
        lines.append(f"| {r['dataset']} | {r['metric']} | " + " | ".join(_cell(v) for v in r["values"]) + " |")
    return "\n".join(lines) + "\n"
