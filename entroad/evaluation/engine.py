"""Cross-domain evaluation: score processed datasets with a trained model, compute metrics
per class and per dataset, and write results + report (METHOD.md §8).

``evaluate(model, datasets, params, out_dir)`` streams each dataset batch by batch through
the model (one decode of the images serves every ablation variant), accumulates image scores
(one float per image) and pixel statistics (bounded memory, see :mod:`entroad.evaluation.pixel_metrics`), and
keeps only the few maps the report shows. Metrics are in percent; a dataset's value is the
mean over its classes, classes where a metric is undefined are excluded *and listed with the
reason* — never a silent number.
"""


from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from entroad.backbone import warn_random_init
from entroad.config import Params, load_params
from entroad.data.lookup import is_plain_name, processed_dir, require_processed
from entroad.data.manifest import ProcessedDataset
from entroad.data.torch_dataset import ManifestImageDataset
from entroad.data.versioning import data_version
from entroad.errors import ConfigError, EntroADError, EvaluationError, InputError, did_you_mean
from entroad.evaluation.accumulate import DatasetRun
from entroad.evaluation.reference import reference_key
from entroad.evaluation.results import DatasetResult, EvaluationResult, ModelIdentity
from entroad.evaluation.writers import write_results
from entroad.logs import progress_bar
from entroad.model_source import BASE_VARIANT, load_models, parse_ablations, resolved_checkpoint

log = logging.getLogger(__name__)


class EvalImageDataset(ManifestImageDataset):
    """The manifest view, refusing a mask whose shape does not fit its image.

    Images and masks are both resized to the model's S×S; a mask stored at another
    resolution but the same aspect ratio is therefore harmless, while one of another aspect
    ratio would be stretched onto the wrong pixels: that is an error naming both files.
    """

    def __getitem__(self, i: int) -> dict:
        item = super().__getitem__(i)
        rec = self.records[i]
        if rec.mask is not None:
            from PIL import Image

            with Image.open(self.dataset.path(rec.mask)) as m:  # header only: no decode
                mw, mh = m.size
            h, w = (int(v) for v in item["orig_size"])
            if abs(mw / mh - w / h) > 0.01 * (w / h):
                raise InputError(
                    f"dataset {self.dataset.name!r}: mask {rec.mask} is {mw}x{mh} px but its image {rec.image} "
                    f"is {w}x{h} px (another aspect ratio); fix or re-ingest the dataset"
                )
        return item


_WORKER_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Za-z_]\w*(?:Error|Exception): (.*)$")


def _batches(loader) -> Iterator[dict]:
    """Iterate a DataLoader; a user error raised in a loader worker keeps its type and gets
    back its one-line message (PyTorch re-raises it wrapped in the worker's traceback)."""
    it = iter(loader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except EntroADError as e:
            text = str(e)
            if "Original Traceback" not in text:
                raise
            lines = [ln for ln in text.strip().splitlines() if ln.strip()]
            m = _WORKER_LINE.match(lines[-1].strip()) if lines else None
            raise type(e)(m.group(1) if m else lines[-1]) from None
        yield batch


# The public entry point
# --------------------------------------------------------------------------------------------
def resolve_dataset(item: str | Path | ProcessedDataset, params: Params) -> tuple[ProcessedDataset, Path]:
    """A dataset given as a processed folder path, a configured/processed name, or an object."""
    if isinstance(item, ProcessedDataset):
        return item, item.root
    text = str(item)
    p = Path(text).expanduser()
    if is_plain_name(text):  # <data.root>/processed/<name>; the error says the command that makes it
        p = processed_dir(params, text)
    return ProcessedDataset.load(p), p


def _data_version(ds: ProcessedDataset, path: Path) -> str:
    return data_version(path)


def suite_targets(params: Params, suite: str) -> list[str]:
    if suite not in params.evaluation.suites:
        known = ", ".join(sorted(params.evaluation.suites)) or "none configured"
        hint = did_you_mean(suite, params.evaluation.suites)
        raise ConfigError(f"evaluation.suites: no suite named {suite!r}{hint} (known: {known})")
    return list(params.evaluation.suites[suite].targets)


def evaluate(
    model: str | Path | Any,
    datasets: Sequence[str | Path | ProcessedDataset] | None = None,
    params: Params | None = None,
    out_dir: str | Path | None = None,
    *,
    suite: str | None = None,
    ablations: str | Sequence[str] | Mapping[str, Mapping[str, Any]] | None = None,
    device: str | torch.device | None = None,
    weights: str | None = None,
    report: bool = True,
    progress: bool = True,
) -> EvaluationResult:
    """Evaluate a model zero-shot on datasets; write results (and the report) to ``out_dir``.

    ``model``: a checkpoint folder, an MLflow URI (``models:/entroad@champion``,
    ``runs:/<id>/model``) or an in-memory ``EntroAD`` (no ablations then).
    ``datasets``: names under ``<data.root>/processed``, folders or loaded datasets; default
    the suite's targets, else ``evaluation.targets``. ``ablations``: ``"entropy=none,routing=none"``
    or ``{"name": {"entropy": "none"}}`` — evaluated on the same batches as the full model.
    """
    params = params or load_params()
    cfg = params.evaluation
    if datasets is None or len(datasets) == 0:
        datasets = suite_targets(params, suite) if suite else list(cfg.targets)
    if not datasets:
        raise ConfigError("no datasets to evaluate: pass --data NAME, --suite NAME or set evaluation.targets")
    variants = dict(ablations) if isinstance(ablations, Mapping) else parse_ablations(ablations)
    require_processed(params, datasets, f"suite {suite!r}" if suite else "")  # every missing one, at once
    loaded = [resolve_dataset(d, params) for d in datasets]
    names = [d.name for d, _ in loaded]
    if len(set(names)) != len(names):
        raise ConfigError(f"dataset listed twice: {names}")

    if isinstance(model, str | Path):
        with resolved_checkpoint(model, params) as ckpt:
            models = load_models(ckpt, variants, params, device, weights)
        source = str(model)
    else:
        if variants:
            raise InputError("ablations need a checkpoint folder or URI (variants are rebuilt from it)")
        models, source = {BASE_VARIANT: model.eval()}, "<in-memory model>"

    result = run_evaluation(models, loaded, params, source, variants, suite=suite, progress=progress)
    if out_dir is not None:
        write_results(result, out_dir, report=report)
    return result


def run_evaluation(
    models: Mapping[str, Any],
    datasets: Sequence[tuple[ProcessedDataset, Path]],
    params: Params,
    source: str,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    suite: str | None = None,
    progress: bool = True,
) -> EvaluationResult:
    """Score every dataset with every model variant in one pass over the images."""
    cfg = params.evaluation
    base = models[BASE_VARIANT]
    info = base.backbone_info
    for name, m in models.items():
        if m.image_size != base.image_size or m.backbone_info.weights_sha256 != info.weights_sha256:
            raise EvaluationError(f"ablation variant {name!r} does not share the full model's backbone/image size")
    if info.random_init:
        warn_random_init(info.name, log)
    trained_on = (getattr(base, "checkpoint_config", None) or {}).get("trained_on") or {}
    notes: list[str] = []
    if suite:
        expected = params.evaluation.suites[suite].train
        if trained_on.get("dataset") and trained_on["dataset"] != expected:
            notes.append(
                f"Suite {suite!r} expects a model trained on {expected!r}, but this one was trained on "
                f"{trained_on['dataset']!r}."
            )
            log.warning(notes[-1])

    settings = {
        "split": cfg.split,
        "batch_size": cfg.batch_size,
        "max_fpr": cfg.max_fpr,
        "aupro": cfg.aupro,
        "pixel_metrics": cfg.pixel_metrics,
        "pixel_bins": cfg.pixel_bins,
        "min_per_label": cfg.min_per_label,
        "operating_point": {"sensitivity": cfg.sensitivity} if cfg.sensitivity is not None else {"specificity": cfg.specificity},
        "image_size": int(base.image_size),
        "device": str(base.device),
        "notes": notes,
    }
    runs: dict[str, list[DatasetResult]] = {n: [] for n in models}
    plans = []
    for ds, path in datasets:
        records = ds.select(cfg.split)
        if not records:
            splits = sorted({r.split for r in ds.records})
            raise EvaluationError(
                f"dataset {ds.name!r} has no images in split {cfg.split!r} (has {splits}); "
                "set evaluation.split (e.g. --set evaluation.split=all)"
            )
        plans.append((ds, path, records))
    total = sum(len(r) for _, _, r in plans)
    dev = base.device
    with progress_bar("[bold]evaluate[/] {task.fields[name]}", enabled=progress) as bar:
        task = bar.add_task("evaluate", total=total, name="")
        for ds, path, records in plans:
            bar.update(task, name=ds.name)
            version = _data_version(ds, path)
            in_domain = bool(trained_on) and (
                trained_on.get("dataset") == ds.name or trained_on.get("data_version") == version
            )
            reference = reference_key(ds.name, cfg.reference_names)
            tds = EvalImageDataset(ds, base.image_size, info.mean, info.std, records=records)
            loader = torch.utils.data.DataLoader(
                tds,
                batch_size=cfg.batch_size,
                shuffle=False,
                num_workers=cfg.num_workers,
                pin_memory=dev.type == "cuda",
                persistent_workers=False,
            )
            accs = {
                n: DatasetRun(ds, records, cfg, cfg.report_examples if n == BASE_VARIANT else 0, cfg.exact_pixel_limit)
                for n in models
            }
            for batch in _batches(loader):
                images = batch["image"].to(dev, non_blocking=True)
                if images.shape[-1] != base.image_size:
                    raise EvaluationError(
                        f"dataset {ds.name!r}: batch of {images.shape[-1]} px for a model of {base.image_size} px"
                    )
                for n, m in models.items():
                    names = list(batch["cls"]) if m.cfg.use_class_names else None
                    accs[n].add(m.predict(images, names), batch)
                bar.advance(task, images.shape[0])
            for n in models:
                runs[n].append(accs[n].result(version, in_domain, reference, settings))

    def make(name: str) -> EvaluationResult:
        m = models[name]
        return EvaluationResult(
            model=ModelIdentity.of(m, source, name, (variants or {}).get(name)),
            datasets=runs[name],
            settings=settings,
            suite=suite,
        )

    result = make(BASE_VARIANT)
    result.variants = {n: make(n) for n in models if n != BASE_VARIANT}
    return result


