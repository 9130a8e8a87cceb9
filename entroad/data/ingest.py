"""Ingestion: raw layout -> processed dataset (manifest + PNGs), safely and only when needed.

``ingest_dataset(params, name)`` is the one entry point (CLI, quickstart and flows call it):

* inside a DVC repository whose ``dvc.yaml`` has the ``ingest`` stage for ``name`` (and
  the params match ``params.yaml``) it runs ``dvc repro ingest@<name>``, so DVC decides,
  caches and records the version in ``dvc.lock``; the stage command calls back into
  :func:`ingest_spec` (``DVC_STAGE`` is set then);
* otherwise it calls :func:`ingest_spec` directly.

:func:`ingest_spec` skips the work when the input fingerprint (spec + code + raw bytes)
matches the one stored in ``dataset.json``; else it writes into a temporary sibling folder
and swaps it in with renames, so a failed or interrupted ingest never leaves a
half-written dataset and never loses the previous one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from entroad.config import DatasetSpec, Params, load_params
from entroad.data import dvc_ops
from entroad.data.convert import convert_items
from entroad.data.fingerprint import code_version, input_fingerprint
from entroad.data.formats import get_format
from entroad.data.formats.base import ImageFormat, Prepared, Skip
from entroad.data.manifest import DATASET_FILE, DatasetMeta, ProcessedDataset, Record, write_manifest
from entroad.data.skips import skip_summary
from entroad.data.synthetic.samples import generate_raw
from entroad.data.versioning import data_root, data_version, dataset_dir, find_dvc_root
from entroad.errors import ConfigError, DatasetError, IngestError, VersioningError
from entroad.locks import file_lock
from entroad.logs import progress_bar

log = logging.getLogger(__name__)

AUDIT_FILE = "audit.json"
MAX_LISTED_SKIPS = 500  # the audit lists at most this many skipped files (counts stay complete)
FORCE_ENV = "ENTROAD_INGEST_FORCE"  # set by the DVC path so `--force` reaches the stage command
DASK_ENV = "ENTROAD_INGEST_DASK"  # likewise for `--dask` (where work runs; not an input)


@dataclass
class IngestResult:
    name: str
    path: Path
    version: str
    skipped: bool  # True: the input had not changed, no work was done
    audit: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.audit.get("counts", {}))


def reason_category(reason: str) -> str:
    """``"duplicate file (same bytes as a.png)"`` -> ``"duplicate file"``."""
    return reason.split(" (", 1)[0].strip()


def build_audit(name: str, fmt: str, counts: dict[str, int], skipped: list[Skip], extra: dict[str, Any]) -> dict[str, Any]:
    """The ingestion audit: counts and why files were skipped. Deterministic (no clock)."""
    reasons = Counter(reason_category(s.reason) for s in skipped)
    listed = sorted(skipped, key=lambda s: (s.what, s.reason))[:MAX_LISTED_SKIPS]
    return {
        "dataset": name,
        "format": fmt,
        "counts": {**counts, "skipped": len(skipped)},
        "skipped_by_reason": dict(sorted(reasons.items())),
        "skipped_files": [{"file": s.what, "reason": s.reason} for s in listed],
        "skipped_files_truncated": len(skipped) > MAX_LISTED_SKIPS,
        **extra,
    }


def read_audit(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / AUDIT_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def resolve_source(spec: DatasetSpec) -> Path:
    if not spec.source:
        raise IngestError(f"dataset {spec.name!r}: no `source` folder configured (data.datasets.{spec.name}.source)")
    src = Path(spec.source).expanduser()
    src = src if src.is_absolute() else Path.cwd() / src
    if not src.is_dir():
        hint = (" (create it with `entroad data samples`)" if spec.generate else
                f"; put the raw images there (layout: `entroad data formats {spec.format}`) or fix `source`")
        raise IngestError(f"dataset {spec.name!r}: source folder {spec.source} does not exist{hint}")
    return src


def _recover(dest: Path) -> None:
    """Undo what an interrupted swap can leave: restore ``.old``, drop stale temp folders."""
    olds = sorted(dest.parent.glob(f".{dest.name}.old-*"))
    if not dest.exists() and olds:
        os.replace(olds[-1], dest)
        log.warning("restored %s from an interrupted ingest", dest)
    for stale in [*dest.parent.glob(f".{dest.name}.old-*"), *dest.parent.glob(f".{dest.name}.tmp-*")]:
        shutil.rmtree(stale, ignore_errors=True)


def _publish(tmp: Path, dest: Path) -> None:
    old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def _is_current(dest: Path, fingerprint: str) -> bool:
    meta = dest / DATASET_FILE
    if not meta.is_file():
        return False
    try:
        stored = json.loads(meta.read_text()).get("ingest_params", {}).get("fingerprint")
    except (OSError, json.JSONDecodeError):
        return False
    if stored != fingerprint:
        return False
    try:
        ProcessedDataset.load(dest)
    except DatasetError:
        return False
    return True


@dataclass
class _Prepared:
    fmt: ImageFormat
    source: Path
    resolved: Prepared
    domain: str
    fingerprint: str
    n_files: int


def _prepare(spec: DatasetSpec, data_root_dir: Path) -> _Prepared:
    """Resolve options and compute the input fingerprint (no processed output is touched)."""
    source = resolve_source(spec)
    fmt = get_format(spec.format)
    resolved = fmt.prepare(spec.options, data_root_dir, generated=spec.generate is not None)
    domain = spec.domain or fmt.domain
    fp_spec = {"format": spec.format, "domain": domain, "options": resolved.public}
    cache = data_root_dir / ".cache" / "ingest" / f"{spec.name}.json"
    if resolved.path_key is not None:
        fingerprint, n_files = input_fingerprint(source, fp_spec, cache, resolved.path_key)
    else:
        fingerprint, n_files = input_fingerprint(source, fp_spec, cache)
    return _Prepared(fmt, source, resolved, domain, fingerprint, n_files)


def _convert(
    prep: _Prepared, name: str, out_dir: Path, bar: Any, dask: str | None = None
) -> tuple[list[Record], list[Skip], dict[str, Any]]:
    """Raw files -> PNGs in ``out_dir``: the format's own converter, or its scan + the shared one.

    ``dask`` reaches a converter as the run-time option ``dask`` (never part of the public
    options, so neither the fingerprint nor dataset.json depends on where the work ran)."""
    fmt, options = prep.fmt, prep.resolved.options
    if fmt.convert is not None:
        resolved = replace(prep.resolved, options={**options, "dask": dask}) if dask else prep.resolved
        return fmt.convert(prep.source, out_dir, resolved, bar)
    assert fmt.scan is not None, f"format {fmt.name!r} has neither scan nor convert"
    scan = fmt.scan(prep.source, options)
    task = bar.add_task(f"ingest {name}", total=len(scan.items))
    expected = fmt.masks if scan.masks_expected is None else scan.masks_expected
    records, skipped, stats = convert_items(scan.items, out_dir, expected, options, progress=lambda n: bar.advance(task, n))
    return records, scan.skipped + skipped, {"stats": stats}


def fingerprint_file(data_root_dir: Path, name: str) -> Path:
    return data_root_dir / ".cache" / "fingerprints" / f"{name}.json"


def write_fingerprint(params: Params, name: str) -> Path:
    """Write the input fingerprint of ``name`` (the DVC stage dependency; holds no paths).

    dvc.yaml makes the ingest stage depend on this small file instead of the raw folder, so
    DVC never walks raw data itself: raw DICOM folder and file names often carry patient
    names, and DVC would keep them in its state database.
    """
    spec = params.data.get(name)
    root = data_root(params)
    prep = _prepare(spec, root)
    out = fingerprint_file(root, name)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"dataset": name, "fingerprint": prep.fingerprint, "files": prep.n_files}, indent=2) + "\n"
    if not out.is_file() or out.read_text() != text:  # unchanged bytes: DVC sees no change
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, out)
    return out


def ingest_spec(
    spec: DatasetSpec, dest: Path, data_root_dir: Path, force: bool = False, progress: bool = True,
    dask: str | None = None,
) -> IngestResult:
    """Ingest one dataset ``spec`` into ``dest`` without DVC (the stage command runs this).

    ``dask``: a ``--dask`` spec (:mod:`entroad.cluster`) for formats that can spread their
    work over Dask workers (DICOM: same output bytes and version as a local run)."""
    t0 = time.perf_counter()
    force = force or os.environ.get(FORCE_ENV) == "1"
    dask = dask or os.environ.get(DASK_ENV) or None
    with file_lock(dest.parent / f".{dest.name}.lock"):  # one ingest of a dataset at a time
        _recover(dest)
        prep = _prepare(spec, data_root_dir)
        fingerprint, n_files = prep.fingerprint, prep.n_files
        public_options = prep.resolved.public
        if n_files == 0:
            raise IngestError(f"dataset {spec.name!r}: source folder {spec.source} is empty")
        if not force and _is_current(dest, fingerprint):
            log.info("%s: input unchanged, nothing to do", spec.name)
            return IngestResult(spec.name, dest, data_version(dest), True, read_audit(dest), time.perf_counter() - t0)
        tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.mkdir(parents=True)
        try:
            with progress_bar("[bold]{task.description}", enabled=progress, transient=True) as bar:
                records, skipped, extra = _convert(prep, spec.name, tmp, bar, dask)
            format_version = extra.pop("format_version", None)  # the processed-file layout
            digests = extra.pop("digests", None)  # of the files the converter wrote, if it kept them
            if not records:
                reasons = Counter(reason_category(s.reason) for s in skipped)
                raise IngestError(
                    f"dataset {spec.name!r}: no usable images in {spec.source} "
                    f"({len(skipped)} skipped: {dict(reasons) or 'no images found'}); check `format` and the folder layout"
                )
            meta = DatasetMeta(
                name=spec.name, domain=prep.domain, classes=[], counts={}, source_format=spec.format,
                ingest_params={
                    "source": spec.source, "options": public_options, "fingerprint": fingerprint,
                    "code_version": code_version(),
                    **({"format_version": format_version} if format_version is not None else {}),
                },
            )
            meta = write_manifest(tmp, records, meta, digests)
            audit = build_audit(spec.name, spec.format, {**meta.counts, "input_files": n_files}, skipped, extra)
            (tmp / AUDIT_FILE).write_text(json.dumps(audit, indent=2, sort_keys=True) + "\n")
            _publish(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.perf_counter() - t0
    version = data_version(dest)
    log.info(
        "%s: %d images (%d anomalous), %d skipped in %.1f s",
        spec.name, meta.counts["images"], meta.counts["anomalous"], len(skipped), seconds,
    )
    return IngestResult(spec.name, dest, version, False, audit, seconds)


def dvc_repo_for(params: Params, name: str, use_dvc: bool | None) -> Path | None:
    """The DVC repo to run ``ingest@name`` in, or None to ingest directly.

    ``use_dvc``: None = when this is a DVC repo whose dvc.yaml has the ingest stage and whose
    params.yaml holds the same settings for ``name``; True = require that; False = never.
    Inside a stage command (``DVC_STAGE`` set) it is always None.
    """
    if use_dvc is False or os.environ.get("DVC_STAGE"):
        return None
    repo = find_dvc_root(Path.cwd())
    why = None
    if repo is None:
        why = "this is not a DVC repository (run `dvc init` in a git repository)"
    elif not dvc_ops.has_ingest_stage(repo):
        why = f"{repo / 'dvc.yaml'} has no `{dvc_ops.STAGE}` foreach stage"
    else:
        repo_params = load_params(repo / "params.yaml")
        if repo_params.data.root != params.data.root or name not in {d.name for d in repo_params.data.datasets}:
            why = f"dataset {name!r} is not configured in {repo / 'params.yaml'}"
        elif repo_params.data.get(name) != params.data.get(name):
            why = f"the settings of {name!r} differ from {repo / 'params.yaml'} (--params/--set)"
    if why is None:
        return repo
    if use_dvc:
        raise VersioningError(f"cannot ingest {name!r} through DVC: {why}")
    log.debug("ingesting %s without DVC: %s", name, why)
    return None


def _ingest_through_dvc(repo: Path, dests: dict[str, Path], force: bool, dask: str | None = None) -> list[IngestResult]:
    """``dvc repro`` of several datasets; a dataset whose dataset.json DVC left alone was skipped."""

    def stamp(dest: Path) -> int | None:
        meta = dest / DATASET_FILE
        return meta.stat().st_mtime_ns if meta.is_file() else None

    before = {n: stamp(d) for n, d in dests.items()}
    t0 = time.perf_counter()
    # --force must reach the stage command too: it skips unchanged input on its own.
    env = {**({FORCE_ENV: "1"} if force else {}), **({DASK_ENV: dask} if dask else {})}
    dvc_ops.repro(repo, list(dests), force=force, env=env or None)
    seconds = (time.perf_counter() - t0) / max(len(dests), 1)
    return [
        IngestResult(n, d, data_version(d), before[n] is not None and before[n] == stamp(d), read_audit(d), seconds)
        for n, d in dests.items()
    ]


def ingest_dataset(
    params: Params, name: str, force: bool = False, use_dvc: bool | None = None, progress: bool = True,
    dask: str | None = None,
) -> IngestResult:
    """Ingest the configured dataset ``name`` (through ``dvc repro`` when that applies, see
    :func:`dvc_repo_for`)."""
    return ingest_datasets(params, [name], force=force, use_dvc=use_dvc, progress=progress, dask=dask)[0]


def ingest_datasets(
    params: Params, names: list[str] | None = None, force: bool = False, use_dvc: bool | None = None,
    progress: bool = True, dask: str | None = None,
) -> list[IngestResult]:
    """:func:`ingest_dataset` for several datasets (default: all configured), in order.

    Through DVC they share one ``dvc repro`` call, which saves a DVC start-up per dataset.
    """
    names = list(names) if names is not None else [d.name for d in params.data.datasets]
    check_settings(params, names)
    repos = {n: dvc_repo_for(params, n, use_dvc) for n in names}
    via_dvc = [n for n in names if repos[n] is not None]
    results: dict[str, IngestResult] = {}
    if via_dvc:
        repo = repos[via_dvc[0]]
        assert repo is not None
        done = _ingest_through_dvc(repo, {n: dataset_dir(params, n) for n in via_dvc}, force, dask)
        results.update({r.name: r for r in done})
    for n in names:
        if n not in results:
            results[n] = ingest_spec(params.data.get(n), dataset_dir(params, n), data_root(params), force, progress, dask)
    report_skips([results[n] for n in names])
    return [results[n] for n in names]


def check_settings(params: Params, names: list[str]) -> None:
    """Fail before any work (and outside ``dvc repro``, whose wrapper lines would bury the
    reason) on a bad format or reader option, naming the params.yaml key it sits under."""
    for n in names:
        spec = params.data.get(n)
        try:
            fmt = get_format(spec.format)
            if fmt.prepare_options is None:  # a custom prepare may touch secrets: the stage checks it
                fmt.resolve_options(spec.options)
        except ConfigError as e:
            raise ConfigError(f"params.yaml data.datasets.{n}: {e}") from None


def report_skips(results: list[IngestResult], configured: bool = True) -> None:
    """Log what each ingest skipped (or kept without a mask), with how to change it: the
    CLI and the flows show these lines, so nothing is left out silently."""
    for r in results:
        for line in skip_summary(r.name, r.audit, r.path, configured):
            log.warning("%s", line)


def ensure_samples(params: Params, force: bool = False) -> list[str]:
    """Create the raw folders of every configured dataset that has a ``generate`` recipe.

    Returns the names whose raw data was (re)written; existing folders are left alone
    unless ``force`` (the bytes are identical for the same recipe either way).
    """
    made = []
    for spec in params.data.datasets:
        if spec.generate is None:
            continue
        if generate_raw(spec, force=force):
            made.append(spec.name)
    return made


def push_datasets(params: Params, names: list[str]) -> str:
    """Push the processed datasets ``names`` to the DVC remote; returns DVC's last line."""
    repo = find_dvc_root(Path.cwd())
    if repo is None:
        return "not a DVC repository: nothing pushed"
    out = (dvc_ops.push(repo, [dvc_ops.stage_name(n) for n in names], params.data.remote) or "").strip()
    return out.splitlines()[-1] if out else "up to date"
