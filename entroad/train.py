"""Training on an auxiliary dataset (METHOD.md §7), resumable bit-exactly.

Layout of a training folder::

    <out>/checkpoints/epoch-0003/   weights.safetensors + config.json + optimizer.safetensors + state.json
    <out>/model/                    the final checkpoint (what evaluation / MLflow use)
    <out>/history.jsonl             one line of loss parts per epoch

Exact resume: the data order of epoch ``e`` comes from a generator seeded with
``(seed, e)``, the learnable tensors and Adam's moments are restored from safetensors, so an
interrupted run continued with ``resume=True`` reaches the same weights as an uninterrupted
one (a test checks bit equality).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.progress import TextColumn
from safetensors.torch import load_file, save_file

from entroad.backbone import BackboneInfo, warn_random_init
from entroad.checkpoint import CONFIG_FILE, is_checkpoint, save_checkpoint
from entroad.config import Params
from entroad.data import versioning
from entroad.data.lookup import processed_dir
from entroad.data.manifest import ProcessedDataset
from entroad.data.torch_dataset import ManifestImageDataset
from entroad.errors import CheckpointError, DatasetError
from entroad.logs import progress_bar
from entroad.losses import entroad_loss
from entroad.model import EntroAD

log = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    model_dir: Path
    out_dir: Path
    history: list[dict[str, Any]]
    epochs_run: int  # epochs trained by this call (0 when everything was already done)
    resumed_from: int | None  # last completed epoch found on resume
    dataset: str
    data_version: str
    backbone: BackboneInfo
    learnable_count: int
    lineage: dict[str, Any] = field(default_factory=dict)


def _dataset_dir(params: Params, name: str) -> Path:
    # the first error already names the fix (`entroad data samples && entroad ingest NAME`)
    return processed_dir(params, name, "train.dataset")


def _data_version(path: Path) -> str:
    return versioning.data_version(path)


HEARTBEAT_S = 30.0


def _duration(seconds: float) -> str:
    """``0s``, ``42s``, ``3m05s``: the ETA of the epoch lines."""
    s = round(seconds)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _epoch_dir(out: Path, epoch: int) -> Path:
    return out / "checkpoints" / f"epoch-{epoch:04d}"


def _latest_epoch(out: Path) -> int | None:
    done = [
        int(p.name.split("-")[1])
        for p in (out / "checkpoints").glob("epoch-*")
        if p.name[6:].isdigit() and (p / "state.json").is_file() and is_checkpoint(p)
    ]
    return max(done) if done else None


def _save_optimizer(opt: torch.optim.Optimizer, folder: Path) -> None:
    sd = opt.state_dict()
    tensors = {f"state.{i}.{k}": v.contiguous() for i, st in sd["state"].items() for k, v in st.items()}
    save_file(tensors, str(folder / "optimizer.safetensors"))
    (folder / "optimizer.json").write_text(json.dumps({"param_groups": sd["param_groups"]}))


def _load_optimizer(opt: torch.optim.Optimizer, folder: Path) -> None:
    tensors = load_file(str(folder / "optimizer.safetensors"))
    groups = json.loads((folder / "optimizer.json").read_text())["param_groups"]
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": groups})


def _fingerprint(params: Params) -> dict[str, Any]:
    """What must not change between an interrupted run and its resume."""
    d = params.resolved()
    return {k: d[k] for k in ("backbone", "model", "train")}


def train(
    params: Params,
    out_dir: str | Path,
    *,
    dataset_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: EpochCallback | None = None,
    device: str | torch.device | None = None,
) -> TrainResult:
    """Train the learnable parts of EntroAD on ``params.train.dataset`` (or ``dataset_dir``)."""
    cfg = params.train
    out = Path(out_dir)
    ds_path = Path(dataset_dir) if dataset_dir is not None else _dataset_dir(params, cfg.dataset)
    dataset = ProcessedDataset.load(ds_path)
    data_version = _data_version(ds_path)

    model = EntroAD.build(params, device=device)
    info = model.backbone_info
    train_set = ManifestImageDataset(dataset, model.image_size, info.mean, info.std, split=cfg.split)
    if len(train_set) == 0:
        raise DatasetError(f"dataset {dataset.name!r} has no images in split {cfg.split!r} (train.split)")
    if not any(train_set.pixel_labelled(r) for r in train_set.records) and len({r.label for r in train_set.records}) < 2:
        raise DatasetError(f"dataset {dataset.name!r}: training needs masks or both normal and anomalous images")

    optimizer = torch.optim.Adam([p for _, p in model.learnable_parameters()], lr=cfg.lr, betas=cfg.betas)
    start, resumed_from, history = 1, None, []
    if resume:
        last = _latest_epoch(out)
        if last is not None:
            folder = _epoch_dir(out, last)
            state = json.loads((folder / "state.json").read_text())
            if state["fingerprint"] != _fingerprint(params):
                raise CheckpointError(
                    f"{out}: cannot resume, params differ from the interrupted run's "
                    "(backbone/model/train sections); use a new output folder or the same params"
                )
            model.load_state_dict(load_file(str(folder / "weights.safetensors")), strict=False)
            _load_optimizer(optimizer, folder)
            history = state["history"]
            start, resumed_from = last + 1, last
            log.info("Resuming %s after epoch %d", out, last)
    elif _latest_epoch(out) is not None:
        raise CheckpointError(f"{out} already holds a training run; pass resume=True (--resume) or use another folder")

    if info.random_init:
        warn_random_init(info.name, log)
    log.info(
        "Training %d learnable tensors (%d parameters) on %s [%s] (%d images, split %s), %d epochs",
        len(model.learnable_parameters()),
        model.count_learnable(),
        dataset.name,
        data_version,
        len(train_set),
        cfg.split,
        cfg.epochs,
    )
    lineage = {
        "dataset": dataset.name,
        "data_version": data_version,
        "domain": dataset.meta.domain,
        "split": cfg.split,
    }
    extra = {"train": cfg.model_dump(mode="json"), "trained_on": lineage}
    epochs_run = 0
    n_batches = -(-len(train_set) // cfg.batch_size)
    started = time.perf_counter()
    bar_ = progress_bar("[bold]train[/] epoch {task.fields[epoch]}", TextColumn("loss {task.fields[loss]:.4f}"),
                        enabled=progress)
    with bar_ as bar:
        task = bar.add_task("train", total=(cfg.epochs - start + 1) * -(-len(train_set) // cfg.batch_size), epoch=start, loss=0.0)
        for epoch in range(start, cfg.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            loader = torch.utils.data.DataLoader(
                train_set,
                batch_size=cfg.batch_size,
                shuffle=True,
                generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch),
                num_workers=cfg.num_workers,
            )
            sums: dict[str, float] = {}
            batches = 0
            beat = t0
            for batch in loader:
                out_b = model(batch["image"], batch["cls"] if params.model.use_class_names else None)
                dev = model.device
                loss, parts = entroad_loss(
                    out_b,
                    batch["mask"].to(dev),
                    batch["pixel_label"].to(dev),
                    batch["label"].to(dev),
                    cfg,
                    params.model.routing_ratio,
                )
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss at epoch {epoch}: {parts}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                parts["loss"] = float(loss.detach())
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                batches += 1
                bar.update(task, advance=1, epoch=epoch, loss=parts["loss"])
                if time.perf_counter() - beat >= HEARTBEAT_S:  # signs of life in logs during a long epoch
                    beat = time.perf_counter()
                    log.info("epoch %d/%d: batch %d/%d, loss %.4f", epoch, cfg.epochs, batches, n_batches, sums["loss"] / batches)
            record = {"epoch": epoch, **{k: v / batches for k, v in sums.items()}, "seconds": time.perf_counter() - t0}
            history.append(record)
            _write_epoch(model, optimizer, out, epoch, history, params, extra)
            epochs_run += 1
            eta = (time.perf_counter() - started) / epochs_run * (cfg.epochs - epoch)
            log.info("epoch %d/%d loss %.4f (%.1fs; ETA %s)", epoch, cfg.epochs, record["loss"], record["seconds"],
                     _duration(eta))
            if on_epoch_end is not None:
                on_epoch_end(epoch, {k: v for k, v in record.items() if k != "epoch"})

    last = _latest_epoch(out)
    if last is None:
        raise CheckpointError(f"{out}: no completed epoch to export")
    model_dir = out / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    for name in ("weights.safetensors", CONFIG_FILE):
        shutil.copy2(_epoch_dir(out, last) / name, model_dir / name)
    (out / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    return TrainResult(
        model_dir=model_dir,
        out_dir=out,
        history=history,
        epochs_run=epochs_run,
        resumed_from=resumed_from,
        dataset=dataset.name,
        data_version=data_version,
        backbone=info,
        learnable_count=model.count_learnable(),
        lineage=lineage,
    )


def _write_epoch(model, optimizer, out: Path, epoch: int, history, params: Params, extra: dict) -> None:
    folder = _epoch_dir(out, epoch)
    save_checkpoint(model, folder, extra={**extra, "epoch": epoch, "history": history})
    _save_optimizer(optimizer, folder)
    # state.json last: its presence marks the epoch as complete
    (folder / "state.json").write_text(json.dumps({"epoch": epoch, "history": history, "fingerprint": _fingerprint(params)}))
    for old in sorted((out / "checkpoints").glob("epoch-*")):
        if old.name[6:].isdigit() and int(old.name[6:]) <= epoch - params.train.keep_checkpoints:
            shutil.rmtree(old, ignore_errors=True)
