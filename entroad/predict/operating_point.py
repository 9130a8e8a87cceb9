"""The threshold predictions are flagged with: a number, the model's stored operating point,
or one taken from an evaluation's ``results.json``; and storing an evaluation's operating
point beside a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from entroad.errors import InputError
from entroad.evaluation.results import EvaluationResult

OPERATING_POINT_FILE = "operating_point.json"
LOW_RATE = 0.5  # below this, sensitivity or specificity earns a warning: the threshold misses most cases


def describe(op: dict) -> list[str]:
    """An operating point (``OperatingPoint.to_json()`` or an ``operating_point.json``) in plain
    words: the threshold, both rates with the counts they rest on, and a WARNING line per low rate."""
    tp, fn, tn, fp = (int(op.get(k, 0)) for k in ("tp", "fn", "tn", "fp"))
    sens = tp / (tp + fn) if tp + fn else None
    spec = tn / (tn + fp) if tn + fp else None

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.0%}"

    lines = [
        f"threshold {float(op['threshold']):.6g} (flagged if score > threshold"
        + (f"; chosen for {op['target']} {op['target_value']}" if op.get("target") else "") + ")",
        f"sensitivity {pct(sens)}: {tp} of {tp + fn} anomalous flagged",
        f"specificity {pct(spec)}: {tn} of {tn + fp} normal passed",
    ]
    if sens is not None and sens < LOW_RATE:
        lines.append(f"WARNING: low sensitivity: {fn} of {tp + fn} anomalous images would NOT be flagged")
    if spec is not None and spec < LOW_RATE:
        lines.append(f"WARNING: low specificity: {fp} of {tn + fp} normal images would be flagged")
    return lines


def operating_point_of(threshold_source: str | None, checkpoint_dir: Path | None, dataset: str | None = None) -> dict | None:
    """The full operating point behind a threshold read from ``checkpoint_dir`` or a file (None for a number)."""
    if threshold_source in (None, "given", "model checkpoint config"):
        return None
    path = Path(threshold_source.split(" [", 1)[0])
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if "threshold" in data:
        return data
    ops = {d["name"]: d["operating_point"] for d in data.get("datasets", []) if d.get("operating_point")}
    if dataset is None and len(ops) == 1:
        dataset = next(iter(ops))
    return ops.get(dataset)


def _threshold_from_json(path: Path, dataset: str | None) -> tuple[float, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"--threshold {path}: cannot read ({e})") from None
    if "threshold" in data:  # an operating_point.json
        return float(data["threshold"]), f"{path}"
    ops = {d["name"]: d["operating_point"] for d in data.get("datasets", []) if d.get("operating_point")}
    if not ops:
        raise InputError(f"--threshold {path}: no operating point in this file (an evaluation results.json?)")
    if dataset is None:
        if len(ops) > 1:
            raise InputError(f"--threshold {path} has operating points for {sorted(ops)}: choose one with --threshold-dataset")
        dataset = next(iter(ops))
    if dataset not in ops:
        raise InputError(f"--threshold {path}: no operating point for dataset {dataset!r} (has {sorted(ops)})")
    op = ops[dataset]
    return float(op["threshold"]), f"{path} [{dataset}: {op['target']} {op['target_value']}]"


def resolve_threshold(
    threshold: float | str | None, checkpoint_dir: Path | None, checkpoint_config: dict | None, dataset: str | None = None
) -> tuple[float | None, str | None]:
    """A number, ``"model"`` (the checkpoint's ``operating_point.json`` or its config's
    ``operating_point``), or a path to an ``operating_point.json`` / evaluation ``results.json``."""
    if threshold is None or threshold == "":
        return None, None
    if isinstance(threshold, int | float):
        return float(threshold), "given"
    text = str(threshold).strip()
    try:
        return float(text), "given"
    except ValueError:
        pass
    if text == "model":
        if checkpoint_dir is not None and (checkpoint_dir / OPERATING_POINT_FILE).is_file():
            return _threshold_from_json(checkpoint_dir / OPERATING_POINT_FILE, dataset)
        op = (checkpoint_config or {}).get("operating_point")
        if op and "threshold" in op:
            return float(op["threshold"]), "model checkpoint config"
        raise InputError(
            "--threshold model: this model has no operating point. Evaluate it on labelled data of your "
            "domain (`entroad evaluate ... --save-operating-point`) or pass a number or a results.json"
        )
    path = Path(text).expanduser()
    if path.is_file():
        return _threshold_from_json(path, dataset)
    raise InputError(f"--threshold {text!r}: expected a number, 'model', or a path to results.json/operating_point.json")




def save_operating_point(result: EvaluationResult, checkpoint_dir: str | Path, dataset: str | None = None) -> Path:
    """Store an evaluation's operating point as ``operating_point.json`` in a checkpoint
    folder, so that ``predict --threshold model`` can use it."""
    ops = [d for d in result.datasets if d.operating_point is not None]
    if dataset is not None:
        ops = [d for d in ops if d.name == dataset]
    if len(ops) != 1:  # the CLI checks the name before evaluating; this guards library callers
        names = [d.name for d in result.datasets if d.operating_point is not None]
        raise InputError(
            f"choose the dataset whose operating point the model should carry (have {names})"
            if len(ops) > 1 else f"no operating point for {dataset or 'any dataset'} (have {names})"
        )
    d = ops[0]
    path = Path(checkpoint_dir) / OPERATING_POINT_FILE
    payload = {
        **d.operating_point.to_json(),
        "dataset": d.name,
        "data_version": d.data_version,
        "weights_sha256": result.model.weights_sha256,
        "random_init": result.model.random_init,
        "created": result.created,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
