"""Turn review verdicts into a versioned evaluation dataset.

Writes ``<data.root>/raw/NAME`` in the generic folder layout (``good/``, ``anomalous/``,
``masks/anomalous/`` for the images where a reviewer marked the defect), adds the dataset to
``params.yaml`` (comments kept) and ingests it with the library's ingest, which gives it a
DVC version. The images are the ones the reviewers saw: the left panel of predict's overlay
(for DICOM the de-identified render, named by its pseudonymous id).
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from entroad.config import DEFAULT_PARAMS, load_params
from entroad.data.ingest import ingest_dataset
from entroad.data.versioning import data_root
from entroad.errors import ConfigError, InputError
from entroad.predict import overlay_name
from entroad.review.images import mask_from_marks, panel
from entroad.review.queue import PredictionQueue
from entroad.review.store import LABELS, REVIEW_DIR, STORE_FILE, VerdictStore

NORMAL_DIR, ANOMALOUS_DIR, MASKS_DIR = "good", "anomalous", "masks"
NAME_RULE = re.compile(r"[a-z0-9][a-z0-9_.-]*")  # as data.datasets names in params.yaml
EXPORT_FILE = "review-export.json"  # marks a raw folder as ours, so a re-export may replace it


@dataclass
class ExportResult:
    name: str
    raw_dir: Path
    counts: dict[str, int]
    conflicts: list[str] = field(default_factory=list)  # ids whose verdicts disagree
    excluded: list[str] = field(default_factory=list)  # ... of those, the ones the rule left out
    params_entry_added: bool = False
    version: str | None = None
    processed_dir: Path | None = None


def dataset_entry(name: str, raw_rel: str, domain: str) -> dict[str, Any]:
    return {
        "format": "folder", "source": raw_rel, "domain": domain,
        # anomalies without a drawn mark stay image-level (not skipped)
        "options": {"normal": NORMAL_DIR, "anomalous": [ANOMALOUS_DIR], "masks": MASKS_DIR,
                    "class_name": name, "missing_masks": "keep"},
    }


def write_raw(queue: PredictionQueue, store: VerdictStore, dest: Path, rule: str) -> ExportResult:
    """The decided verdicts as a folder-layout raw dataset at ``dest`` (replaced atomically)."""
    if dest.exists() and not (dest / EXPORT_FILE).is_file():
        raise InputError(f"{dest} exists and was not written by `entroad review export`; choose another --dataset name")
    conflicts = [i for i, _ in store.conflicts()]
    chosen = {it.id: store.decide(it.id, rule) for it in queue.items}
    chosen = {i: v for i, v in chosen.items() if v is not None}
    if not chosen:
        raise InputError(f"{queue.folder}: no image has an anomalous/normal verdict to export yet (review some with `entroad review`)")
    no_image = [i for i in chosen if queue.resolve(queue.by_id[i].overlay) is None]
    if no_image:
        raise InputError(f"{len(no_image)} reviewed image(s) have no overlay in {queue.folder} (e.g. {no_image[0]!r}); "
                         "rerun `entroad predict` with overlays")
    tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    counts = {"normal": 0, "anomalous": 0, "with_mask": 0}
    try:
        for sub in (NORMAL_DIR, ANOMALOUS_DIR, f"{MASKS_DIR}/{ANOMALOUS_DIR}"):
            (tmp / sub).mkdir(parents=True)
        for item_id, v in sorted(chosen.items()):
            image = panel(queue.resolve(queue.by_id[item_id].overlay), "image")
            fname = overlay_name(item_id)
            folder = ANOMALOUS_DIR if LABELS[v.verdict] else NORMAL_DIR
            image.save(tmp / folder / fname)
            counts[v.verdict] += 1
            mask = mask_from_marks(image.size, v.marks) if folder == ANOMALOUS_DIR else None
            if mask is not None:
                mask.save(tmp / MASKS_DIR / ANOMALOUS_DIR / fname)
                counts["with_mask"] += 1
        excluded = [i for i in conflicts if i not in chosen]
        # no times or names here: the same verdicts give the same bytes (and the same data version)
        summary = {"conflict_rule": rule, "counts": counts, "conflicts": len(conflicts), "excluded": len(excluded),
                   "model_weights_sha256": queue.meta.get("model", {}).get("weights_sha256"),
                   "random_init": queue.random_init, "input_kind": queue.kind}
        (tmp / EXPORT_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
            dest.rename(old)
            tmp.rename(dest)
            shutil.rmtree(old)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(name=dest.name, raw_dir=dest, counts=counts, conflicts=conflicts, excluded=excluded)


def add_params_entry(params_path: Path, name: str, entry: dict[str, Any], target: bool = False) -> bool:
    """Add ``data.datasets.NAME`` (and optionally the evaluation target) to params.yaml,
    keeping its comments. Returns False when an identical entry was already there."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 110
    doc = yaml.load(params_path.read_text()) if params_path.is_file() else None
    doc = doc if doc is not None else CommentedMap()
    datasets = doc.setdefault("data", CommentedMap()).setdefault("datasets", CommentedMap())
    if not isinstance(datasets, dict):
        raise ConfigError(f"{params_path}: data.datasets must be a mapping keyed by name to add {name!r}")
    changed = False
    old = datasets.get(name)
    if old is not None:
        same = {k: old.get(k) for k in ("format", "source")} == {k: entry[k] for k in ("format", "source")}
        if not same:
            raise ConfigError(f"{params_path}: dataset {name!r} already exists with another format/source; "
                              "choose another --dataset name")
    else:
        datasets[name] = CommentedMap(entry)
        changed = True
    if target:
        evaluation = doc.setdefault("evaluation", CommentedMap())
        targets = evaluation.setdefault("targets", [])
        if name not in targets:
            targets.append(name)
            changed = True
    if changed:
        tmp = params_path.with_name(params_path.name + ".tmp")
        with open(tmp, "w") as f:
            yaml.dump(doc, f)
        tmp.replace(params_path)
    return changed


def export_review(
    predictions: str | Path, name: str, *, params_path: str | Path | None = None, rule: str = "exclude",
    target: bool = False, ingest: bool = True, use_dvc: bool | None = None, progress: bool = True,
) -> ExportResult:
    """Write, register and ingest the reviewed images of ``predictions`` as dataset ``name``."""
    if not NAME_RULE.fullmatch(name):
        raise ConfigError(f"--dataset {name!r}: use lowercase letters, digits and . _ - (e.g. 'line7-review')")
    params_file = Path(params_path or DEFAULT_PARAMS)
    params = load_params(params_path)
    queue = PredictionQueue(predictions)
    store_path = queue.folder / REVIEW_DIR / STORE_FILE
    if not store_path.is_file():
        raise InputError(f"{queue.folder}: no verdicts yet ({store_path} is missing); review with `entroad review`")
    store = VerdictStore(store_path, known_ids=queue.by_id)
    raw = data_root(params) / "raw" / name
    result = write_raw(queue, store, raw, rule)
    base = Path.cwd().resolve()  # sources are read relative to the working directory, like data.root
    raw_rel = raw.resolve().relative_to(base).as_posix() if raw.resolve().is_relative_to(base) else str(raw.resolve())
    domain = "medical" if queue.kind == "dicom" else "industrial"
    result.params_entry_added = add_params_entry(params_file, name, dataset_entry(name, raw_rel, domain), target)
    if ingest:
        res = ingest_dataset(load_params(params_path), name, use_dvc=use_dvc, progress=progress)
        result.version, result.processed_dir = res.version, res.path
    return result
