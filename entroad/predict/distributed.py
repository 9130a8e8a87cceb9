"""Site prediction on a Dask cluster: the input listing is split into shards, each scored by a
worker that loads the model once, each written to its own result file, then merged into the
same ``scores.csv`` a serial run writes.

The output folder, the inputs and the checkpoint must be on a filesystem every worker sees (a
local cluster, or a shared volume on a real one). Resuming is by shard: a rerun submits only
the shards without a result file; a worker lost mid-shard has its shard rerun by Dask, and
the atomic result file leaves no partial or duplicate rows.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from entroad.cluster import DaskSpec, dask_client
from entroad.config import Params
from entroad.logs import progress_bar
from entroad.model_source import load_models
from entroad.predict.inputs import PredictItem
from entroad.predict.scoring import item_loader, score_chunk
from entroad.predict.shards import (
    SHARDS_DIR,
    Shard,
    check_run_key,
    merge_shards,
    plan_shards,
    read_shard,
    write_shard,
)

TASK_RETRIES = 2  # an exception in a shard (e.g. a worker's disk full) is retried before the job fails


@dataclass(frozen=True)
class ShardJob:
    """What every shard task needs besides its items (small: it travels with each task)."""

    checkpoint: str
    model_key: str  # hash of the checkpoint: the per-worker model cache key
    params: Params
    device: str | None
    weights: str | None
    threshold: float | None
    random_init: bool
    out: str
    overlays: bool
    batch_size: int


@dataclass
class DaskOutcome:
    n_scored: int  # rows scored by this call
    n_reused: int  # rows from shard files of an earlier call
    failures: list[tuple[str, str]] = field(default_factory=list)
    shards_run: int = 0
    shards_total: int = 0
    summaries: list[dict[str, Any]] = field(default_factory=list)  # one per shard run: rows, worker pid, loads


# One model per worker process, kept between tasks: loading it (backbone + prompt embeddings)
# costs far more than scoring a shard.
_MODELS: dict[tuple[str, str, str | None], Any] = {}
_LOADS = 0  # models loaded by this process, reported back so that "once per worker" is checked


def models_loaded() -> int:
    """How many models this worker process has loaded (one per job's model, not per shard)."""
    return _LOADS


def worker_device(requested: str | None, params: Params) -> str:
    """The device of this worker: an explicit ``cuda:N``/``cpu`` as given; for ``auto``/``cuda``
    one GPU per worker (dask-cuda makes each worker's own GPU its first visible one; without
    it, workers on one machine spread over its GPUs by worker number)."""
    spec = requested or params.backbone.device
    if spec not in ("auto", "cuda") or not torch.cuda.is_available():
        return "cpu" if spec == "auto" else spec
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        return "cuda:0"
    from distributed import get_worker

    tail = str(get_worker().name).rsplit("-", 1)[-1]  # LocalCluster: 0, 1, ...; others often "host-3"
    ordinal = int(tail) if tail.isdigit() else 0
    return f"cuda:{ordinal % torch.cuda.device_count()}"


def _worker_model(job: ShardJob) -> Any:
    global _LOADS
    device = worker_device(job.device, job.params)
    key = (job.model_key, device, job.weights)
    if key not in _MODELS:
        _MODELS.clear()  # a new job's model replaces the last one: workers outlive jobs
        _MODELS[key] = load_models(Path(job.checkpoint), {}, job.params, device, job.weights)["full"]
        _LOADS += 1
    return _MODELS[key]


def _loader_processes(net: Any, params: Params) -> int:
    """Decoding processes per shard: on a CPU worker none (the Dask workers already use every
    core, and new loader processes per shard would cost more than they save); on a GPU the
    configured ones, unless the worker is daemonic (plain `dask worker`), which may have none."""
    if net.device.type == "cpu" or multiprocessing.current_process().daemon:
        return 0
    return params.evaluation.num_workers


def score_shard(shard: Shard, job: ShardJob) -> dict[str, Any]:
    """The Dask task: score one shard and write its result file (skipped when it exists)."""
    out = Path(job.out)
    path = out / SHARDS_DIR / shard.name
    if not path.is_file():
        net = _worker_model(job)
        rows: list[dict[str, Any]] = []
        failures: list[tuple[str, str]] = []
        loaders = _loader_processes(net, job.params)
        for chunk in item_loader(shard.items, net, job.batch_size, loaders, job.overlays):
            r, f = score_chunk(net, chunk, job.threshold, job.random_init, out)
            rows += r
            failures += f
        write_shard(path, rows, failures)
    rows, failures = read_shard(path)
    return {"shard": shard.index, "rows": len(rows), "failures": len(failures), "pid": os.getpid(), "model_loads": _LOADS}


def score_on_dask(
    spec: DaskSpec | str,
    items: Sequence[PredictItem],
    job: ShardJob,
    run_key: dict[str, Any],
    scores_csv: Path,
    *,
    shard_size: int,
    progress: bool = True,
) -> DaskOutcome:
    """Score ``items`` on the cluster named by ``spec`` and merge the shards into
    ``scores_csv``; only shards without a result file are submitted."""
    from distributed import as_completed

    out = Path(job.out)
    folder = out / SHARDS_DIR
    check_run_key(folder, run_key)
    shards = plan_shards(items, shard_size)
    pending = [s for s in shards if not (folder / s.name).is_file()]
    n_scored = 0
    summaries: list[dict[str, Any]] = []
    if pending:
        with dask_client(spec) as client, progress_bar("[bold]predict[/] {task.fields[where]}", enabled=progress) as bar:
            task = bar.add_task("predict", total=len(items), completed=len(items) - sum(len(s.items) for s in pending),
                                where=f"({len(pending)}/{len(shards)} shards)")
            futures = {client.submit(score_shard, s, job, retries=TASK_RETRIES, pure=False): s for s in pending}
            try:
                for fut in as_completed(futures):
                    summary = fut.result()  # a shard's error ends the job; finished shards stay on disk
                    summaries.append(summary)
                    n_scored += summary["rows"]
                    bar.advance(task, len(futures[fut].items))
            except BaseException:
                client.cancel(list(futures))
                raise
    n_rows, failures = merge_shards(folder, shards, scores_csv)
    return DaskOutcome(n_scored=n_scored, n_reused=n_rows - n_scored, failures=failures,
                       shards_run=len(pending), shards_total=len(shards), summaries=summaries)
