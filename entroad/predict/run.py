"""The scoring run of site prediction: score every input, write ``scores.csv``, overlays,
``failures.csv`` and ``predict.json``; resumable batch by batch."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from entroad import __version__
from entroad.backbone import warn_random_init
from entroad.cluster import DaskSpec
from entroad.config import Params, load_params
from entroad.errors import InputError
from entroad.evaluation.results import ModelIdentity
from entroad.logs import progress_bar
from entroad.model_source import cached_checkpoint, load_models, resolved_checkpoint
from entroad.predict.distributed import ShardJob, score_on_dask
from entroad.predict.inputs import SLICES_DIR, check_input, collect_items
from entroad.predict.operating_point import operating_point_of, resolve_threshold
from entroad.predict.scoring import SCORE_COLUMNS, item_loader, score_chunk
from entroad.predict.shards import DEFAULT_SHARD_SIZE, SHARDS_DIR
from entroad.tracking.keys import checkpoint_key

log = logging.getLogger(__name__)

SCORES_FILE = "scores.csv"
FAILURES_FILE = "failures.csv"
META_FILE = "predict.json"
__all__ = ["FAILURES_FILE", "META_FILE", "SCORES_FILE", "SCORE_COLUMNS", "PredictResult", "predict"]


@dataclass
class PredictResult:
    out_dir: Path
    scores_csv: Path
    n_total: int
    n_scored: int  # by this call
    n_skipped: int  # already scored by an earlier call
    failures: list[tuple[str, str]] = field(default_factory=list)
    threshold: float | None = None
    threshold_source: str | None = None
    random_init: bool = False
    shards_run: int = 0  # Dask runs: shards scored by this call, of shards_total
    shards_total: int = 0
    operating_point: dict | None = None  # the full point behind a threshold from 'model' or a file




def _done_ids(scores: Path) -> set[str]:
    if not scores.is_file():
        return set()
    with open(scores, newline="") as f:
        return {row["id"] for row in csv.DictReader(f) if row.get("id")}


def _check_resume(out: Path, meta: dict[str, Any]) -> None:
    old_path = out / META_FILE
    if not old_path.is_file() or not (out / SCORES_FILE).is_file():
        return
    old = json.loads(old_path.read_text())

    def key(m: dict[str, Any]) -> dict[str, Any]:
        model = m.get("model", {})
        return {
            "weights": model.get("weights_sha256"),
            "options": model.get("options"),
            "image size": m.get("image_size"),
            "threshold": m.get("threshold"),
        }

    diff = [k for k, v in key(old).items() if key(meta)[k] != v]
    if diff:
        raise InputError(
            f"{out} holds scores from a different model or threshold ({', '.join(diff)} differ); "
            "use another --out folder or --restart to discard them"
        )


def predict(
    model: str | Path | Any,
    input_path: str | Path,
    out_dir: str | Path,
    *,
    params: Params | None = None,
    threshold: float | str | None = None,
    threshold_dataset: str | None = None,
    batch_size: int | None = None,
    overlays: bool = True,
    restart: bool = False,
    device: str | torch.device | None = None,
    weights: str | None = None,
    progress: bool = True,
    dask: DaskSpec | str | None = None,
    shard_size: int | None = None,
) -> PredictResult:
    """Score every image under ``input_path``; see the module docstring for the outputs.

    ``threshold``: None (scores only), a number, ``"model"`` or a path to an evaluation's
    ``results.json`` / an ``operating_point.json``; images with ``score > threshold`` are flagged.
    ``dask``: score on a Dask cluster (``local``, ``local:N`` or a scheduler address), in
    shards of ``shard_size`` images; see :mod:`entroad.predict.distributed`.
    """
    params = params or load_params()
    out = Path(out_dir)
    check_input(input_path)  # before the model loads: an empty input costs nothing

    op = None
    ckpt_dir: Path | None = None
    if isinstance(model, str | Path):
        # Dask workers read the checkpoint after this call: it must outlive a temporary download
        with nullcontext(cached_checkpoint(model, params)) if dask else resolved_checkpoint(model, params) as ckpt:
            net = load_models(ckpt, {}, params, device, weights)["full"]
            thr, thr_source = resolve_threshold(threshold, ckpt, net.checkpoint_config, threshold_dataset)
            op = operating_point_of(thr_source, ckpt, threshold_dataset)  # read while a downloaded model exists
        source, ckpt_dir = str(model), ckpt
    elif dask:
        raise InputError("--dask scores with a checkpoint folder or MLflow URI that the workers load, not an in-memory model")
    else:
        net, source = model.eval(), "<in-memory model>"
        thr, thr_source = resolve_threshold(threshold, None, getattr(net, "checkpoint_config", None), threshold_dataset)
    out.mkdir(parents=True, exist_ok=True)  # only once model and threshold are valid: no empty folder on failure
    if restart:
        for name in (SCORES_FILE, FAILURES_FILE, META_FILE):
            (out / name).unlink(missing_ok=True)
        for name in ("overlays", SLICES_DIR, SHARDS_DIR):
            shutil.rmtree(out / name, ignore_errors=True)
    identity = ModelIdentity.of(net, source)
    info = net.backbone_info
    items, skipped_inputs, kind = collect_items(input_path, out, params, net.image_size)
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise InputError(f"{input_path}: duplicate image ids")
    if identity.random_init:
        warn_random_init(info.name, log)
    meta = {
        "entroad_version": __version__,
        "model": identity.to_json(),
        "random_init": identity.random_init,
        "threshold": thr,
        "threshold_source": thr_source,
        "rule": "flagged if score > threshold",
        "input_kind": kind,
        "image_size": net.image_size,
    }
    _check_resume(out, meta)
    done = _done_ids(out / SCORES_FILE)
    todo = [it for it in items if it.id not in done]
    meta["n_total"] = len(items)
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    if overlays:
        (out / "overlays").mkdir(exist_ok=True)

    bs = batch_size or params.evaluation.batch_size
    shards = (0, 0)
    if dask:
        job = ShardJob(
            checkpoint=str(ckpt_dir), model_key=checkpoint_key(ckpt_dir), params=params,
            device=None if device is None else str(device), weights=weights, threshold=thr,
            random_init=identity.random_init, out=str(out.resolve()), overlays=overlays, batch_size=bs,
        )
        run_key = {k: meta[k] for k in ("threshold", "image_size")} | {"checkpoint": job.model_key}
        res = score_on_dask(dask, items, job, run_key, out / SCORES_FILE, shard_size=shard_size or DEFAULT_SHARD_SIZE,
                           progress=progress)
        scored, n_skipped, shards = res.n_scored, res.n_reused, (res.shards_run, res.shards_total)
        failures = [*skipped_inputs, *res.failures]
    else:
        scored, failures = _score_serial(net, todo, out, thr, identity.random_init, bs, params, overlays, progress)
        failures = [*skipped_inputs, *failures]
        n_skipped = len(done & set(ids))
    if failures:
        with open(out / FAILURES_FILE, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["id", "reason"])
            w.writerows(failures)
        log.warning("%d file(s) could not be read; see %s", len(failures), out / FAILURES_FILE)
    else:
        (out / FAILURES_FILE).unlink(missing_ok=True)
    meta["n_scored_total"] = n_skipped + scored
    meta["n_failed"] = len(failures)
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return PredictResult(
        out_dir=out,
        scores_csv=out / SCORES_FILE,
        n_total=len(items),
        n_scored=scored,
        n_skipped=n_skipped,
        failures=failures,
        threshold=thr,
        threshold_source=thr_source,
        random_init=identity.random_init,
        shards_run=shards[0],
        shards_total=shards[1],
        operating_point=op,
    )


def _score_serial(net, todo, out: Path, thr, random_init: bool, bs: int, params: Params, overlays: bool, progress: bool):
    """Score ``todo`` in this process, appending to ``scores.csv`` batch by batch (flushed:
    a crash loses at most the current batch); returns the rows written and unreadable files."""
    new_scores = not (out / SCORES_FILE).is_file()
    failures: list[tuple[str, str]] = []
    scored = 0
    loader = item_loader(todo, net, bs, params.evaluation.num_workers, overlays)
    with open(out / SCORES_FILE, "a", newline="") as fs, progress_bar("[bold]predict[/]", enabled=progress) as bar:
        writer = csv.DictWriter(fs, fieldnames=SCORE_COLUMNS, lineterminator="\n")
        if new_scores:
            writer.writeheader()
        task = bar.add_task("predict", total=len(todo))
        for chunk in loader:
            rows, bad = score_chunk(net, chunk, thr, random_init, out)
            failures += bad
            if rows:
                writer.writerows(rows)
                fs.flush()
                scored += len(rows)
            bar.advance(task, len(chunk))
    return scored, failures
