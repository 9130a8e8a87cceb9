"""DICOM ingest: a folder of DICOM files -> de-identified 8-bit PNG slices + manifest records.

Pipeline: scan (:func:`scan_file`, on worker processes or Dask workers
(:mod:`entroad.data.dicom.workers`): each file is read once; its header
(:mod:`entroad.data.dicom.scan`: non-DICOM and non-image files are skipped and reported)
and its pixels come from the same dataset; slices displayed on their own - a window, the
file's window / VOI LUT, colour - are decoded, windowed, padded to a square and
PNG-encoded right away into a staging folder) -> volumes (series stacks, multi-frame files) -> labels/masks
(:mod:`entroad.data.dicom.labels`, :mod:`entroad.data.dicom.masks`) -> slice selection ->
:func:`run_task` per chunk: staged PNGs are moved to their final names; slices the scan
left (percentile display, which needs the whole volume; slice selections other than
``all``) are decoded then with ``pydicom.pixels.pixel_array(path, ds_out=...)``.

Fixed windows are applied through a per-stored-value lookup table; grey slices are written
as palette PNGs (RGB by channel replication, one byte per pixel to compress). MONAI's
``LoadImage(reader="PydicomReader")`` is the reference the tests compare our HU volumes
against. Compressed transfer syntaxes decode through pydicom's plugins (Pillow,
pylibjpeg); a file whose plugin is missing is skipped with a reason naming the package to
install. Outputs and records do not depend on the worker count, nor on whether the work ran
on Dask (``options["dask"]``, a run-time setting outside the public options).

Processed-slice layout (:data:`FORMAT_VERSION`, recorded in dataset.json as
``ingest_params.format_version``): 2 = native resolution padded to a square unless the
``size`` option asks for a resize; 1 (no version recorded) = every slice resized to
``size`` (518 px). The loader reads both the same way (it resizes every image to the model
size); it refuses versions it does not know.

Nothing from a header reaches the output: file names are ``<class>/<study id>/<series
id>/<slice>.png`` with salted pseudonymous ids, skipped files are reported by pseudonymous
file id, and the audit holds counts only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from entroad.cluster import dask_client
from entroad.data.dicom.deid import Pseudonymizer
from entroad.data.dicom.labels import LabelRow, covers, read_labels
from entroad.data.dicom.masks import MaskError, nifti_on_grid, png_mask
from entroad.data.dicom.pixels import (
    DecodeProblem,
    decode_dataset,
    decode_file,
    encode_slice,
    fit_size,
    frame_of,
    modality_values,
    monochrome1,
    parse_display,
    percentile_range,
    percentile_uint8,
    render,
)
from entroad.data.dicom.scan import (
    Header,
    NotAnImage,
    Volume,
    group_volumes,
    header_from_dataset,
    read_dataset,
    select_slices,
)
from entroad.data.dicom.workers import default_workers, runner
from entroad.data.fingerprint import raw_files
from entroad.data.images import encode_png
from entroad.data.manifest import Record, Skip
from entroad.errors import DicomError

_NIFTI = (".nii", ".nii.gz")
FORMAT_VERSION = 2

# --------------------------------------------------------------------------------------------
# Work units and the per-slice pixel work
# --------------------------------------------------------------------------------------------
@dataclass
class SliceJob:
    index: int
    rel: str
    frame: int | None
    label: int
    anomaly_type: str
    mask_png: str | None = None
    mask_bits: tuple[np.ndarray, tuple[int, int]] | None = None  # packed NIfTI slice
    staged: str | None = None  # PNG already rendered during the scan (moved into place)
    digest: str | None = None  # SHA-256 of the staged PNG, taken when it was written
    failure: str | None = None  # the scan's decode / display failure for this slice
    shape: tuple[int, int] | None = None  # (rows, cols) of the slice, from its header


@dataclass
class Task:
    source: str
    out_dir: str
    cls: str
    study: str
    series: str
    display: tuple[str, tuple[float, float] | None]
    percentiles: tuple[float, float]
    size: int | None
    resize: str
    file_ids: dict[str, str]
    jobs: list[SliceJob] = field(default_factory=list)
    syntaxes: dict[str, str] = field(default_factory=dict)  # rel -> transfer syntax name


# --------------------------------------------------------------------------------------------
# Scan: one read per file gives the header and, for slices displayed on their own, the PNG
# --------------------------------------------------------------------------------------------
_DEFER = 64 * 1024  # pixel data above this is read only when the slice is rendered


@dataclass(frozen=True)
class RenderSpec:
    """What the scan needs to render slices right away (those not needing their volume)."""

    displays: dict[str, tuple[str, tuple[float, float] | None]]  # modality (or "default") -> display
    size: int | None
    resize: str
    allow_burned_in: bool
    stage: str  # folder of the rendered PNGs until their final names are known

    def display(self, modality: str) -> tuple[str, tuple[float, float] | None]:
        return self.displays.get(modality, self.displays["default"])


@dataclass
class Scanned:
    rel: str
    header: Header | None = None
    reason: str | None = None  # why the file is no image (header is None then)
    staged: dict[int | None, str | None] = field(default_factory=dict)  # frame -> None (staged) | failure
    digests: dict[int | None, str] = field(default_factory=dict)  # frame -> SHA-256 of its staged PNG


def stage_path(stage: str, i: int, frame: int | None) -> str:
    return os.path.join(stage, f"{i:07d}.png" if frame is None else f"{i:07d}-{frame}.png")


def scan_file(args: tuple[str, str, int, RenderSpec | None]) -> Scanned:
    """Read one file once: its header and, when ``spec`` is given, its rendered PNGs (staged).

    Slices whose display needs the whole volume (percentile) are left for :func:`run_task`.
    """
    path, rel, i, spec = args
    try:
        # Pixels read with the header when the scan renders: a deferred read re-opens and
        # re-parses the file, 0.3 ms of a 512 x 512 slice's ~2.5 ms.
        ds = read_dataset(Path(path), None if spec is not None else _DEFER)
        header = header_from_dataset(ds, rel)
    except NotAnImage as e:
        return Scanned(rel, reason=str(e))
    except Exception as e:  # a header value of the wrong type or form
        return Scanned(rel, reason=f"unreadable DICOM header ({type(e).__name__})")
    if spec is None or (header.burned_in and not spec.allow_burned_in):
        return Scanned(rel, header)
    mode, window = spec.display(header.modality)
    if mode == "percentile":
        return Scanned(rel, header)
    frames: list[int | None] = [None] if header.frames == 1 else list(range(header.frames))
    try:
        arr = decode_dataset(ds, header.transfer_syntax)
    except DecodeProblem as e:
        return Scanned(rel, header, staged=dict.fromkeys(frames, str(e)))
    del ds.PixelData  # the decoded array is all that is needed now
    staged: dict[int | None, str | None] = {}
    digests: dict[int | None, str] = {}
    for f in frames:
        frame = frame_of(arr, f)
        img8 = "frame missing from pixel data" if frame is None else render(ds, frame, mode, window)
        if isinstance(img8, str):
            staged[f] = img8
            continue
        digests[f] = _write(Path(stage_path(spec.stage, i, f)), encode_slice(img8, spec.size, spec.resize))
        staged[f] = None
    return Scanned(rel, header, staged=staged, digests=digests)


def run_task(task: Task) -> tuple[list[dict[str, Any]], list[tuple[str, str]], dict[str, str]]:
    """Decode (unless the scan did), display, resize and write every slice of ``task``.

    Returns the manifest records (in job order), the skipped slices and the SHA-256 of
    every PNG written (by relative path; the manifest's content hash needs them).
    """
    src, out = Path(task.source), Path(task.out_dir)
    mode, window = task.display
    cache: dict[str, tuple[Any, np.ndarray] | str] = {}
    # (job, (rows, cols), display bytes | None, percentile input | None, invert)
    ready: list[tuple[SliceJob, tuple[int, int], np.ndarray | None, np.ndarray | None, bool]] = []
    skips: list[tuple[str, str]] = []
    for job in task.jobs:
        if job.failure is not None:
            skips.append((task.file_ids[job.rel], job.failure))
            continue
        if job.staged is not None:
            assert job.shape is not None
            ready.append((job, job.shape, None, None, False))
            continue
        got = cache.get(job.rel)
        if got is None:
            try:
                got = decode_file(src / job.rel, task.syntaxes.get(job.rel, "unknown"))
            except DecodeProblem as e:
                got = str(e)
                skips.append((task.file_ids[job.rel], got))
            # Multi-frame files serve many jobs: keep them decoded; single frames need no cache.
            cache[job.rel] = got if job.frame is not None else "done"
        if isinstance(got, str):
            continue
        ds, arr = got
        frame = frame_of(arr, job.frame)
        if frame is None:
            skips.append((task.file_ids[job.rel], "frame missing from pixel data"))
            continue
        shape = (int(frame.shape[0]), int(frame.shape[1]))
        if mode == "percentile" and frame.ndim == 2:
            try:
                values = modality_values(ds, frame)
            except Exception as e:
                skips.append((task.file_ids[job.rel], f"cannot display pixel data ({type(e).__name__})"))
                continue
            ready.append((job, shape, None, values, monochrome1(ds)))
            continue
        img8 = render(ds, frame, mode, window)
        if isinstance(img8, str):
            skips.append((task.file_ids[job.rel], img8))
            continue
        ready.append((job, shape, img8, None, False))
    prange = None
    if mode == "percentile":
        grey = [v for _, _, _, v, _ in ready if v is not None]
        prange = percentile_range(np.concatenate([g.ravel() for g in grey]), *task.percentiles) if grey else (0.0, 1.0)
    records: list[dict[str, Any]] = []
    digests: dict[str, str] = {}
    for job, (rows, cols), img8, values, invert in ready:
        if values is not None:
            img8 = percentile_uint8(values, prange)
            if invert:
                img8 = 255 - img8
        mask = None
        if job.mask_bits is not None:
            bits, shape = job.mask_bits
            mask = np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).astype(bool)
        elif job.mask_png is not None:
            try:
                mask = png_mask(src / job.mask_png, rows, cols)
            except MaskError as e:
                skips.append((f"{task.series}/{job.index:04d}", str(e)))
                continue
        label = job.label if job.label >= 0 else int(mask is not None and bool(mask.any()))
        stem = f"{task.cls}/{task.study}/{task.series}/{job.index:04d}"
        img_rel = f"images/{stem}.png"
        if job.staged is not None:
            _move(Path(job.staged), out / img_rel)
            if job.digest is not None:
                digests[img_rel] = job.digest
        else:
            assert img8 is not None
            digests[img_rel] = _write(out / img_rel, encode_slice(img8, task.size, task.resize))
        mask_rel = None
        if label == 1 and mask is not None:
            mask_rel = f"masks/{stem}.png"
            m8 = fit_size(mask.astype(np.uint8) * 255, task.size, task.resize, nearest=True)
            digests[mask_rel] = _write(out / mask_rel, encode_png(m8, rle=True))
        records.append({
            "image": img_rel, "mask": mask_rel, "label": label, "cls": task.cls, "split": "test",
            "source_id": f"{task.series}/{job.index:04d}",
            "anomaly_type": job.anomaly_type if label == 1 else "good",
        })
    return records, skips, digests


def _write(path: Path, data: bytes) -> str:
    """Write ``data``; returns its SHA-256 (hashing bytes in memory is 20x cheaper than
    reading the file back for the content hash in the calling process)."""
    try:
        path.write_bytes(data)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _move(src: Path, dest: Path) -> None:
    try:
        os.replace(src, dest)
    except FileNotFoundError:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------
@dataclass
class _Labels:
    rows: list[LabelRow]
    exact: dict[str, list[LabelRow]]
    by_id: dict[str, list[LabelRow]]
    folders: list[LabelRow]
    used: set[int] = field(default_factory=set)

    @classmethod
    def build(cls, rows: list[LabelRow], files: set[str]) -> _Labels:
        exact: dict[str, list[LabelRow]] = {}
        by_id: dict[str, list[LabelRow]] = {}
        folders = []
        for r in rows:
            if r.by_id:
                by_id.setdefault(r.key, []).append(r)
            elif r.key in files:
                exact.setdefault(r.key, []).append(r)
            else:
                folders.append(r)
        return cls(rows, exact, by_id, folders)

    def best(self, vol: Volume, k: int, rel: str) -> LabelRow | None:
        cands: list[tuple[tuple[int, int, int], LabelRow]] = []
        for r in self.exact.get(rel, []):
            cands.append(((2 if not vol.multiframe else 0, int(r.slice is not None), len(r.key)), r))
        for r in self.by_id.get(vol.key, []):
            cands.append(((0, int(r.slice is not None), 0), r))
        for r in self.folders:
            if covers(r, rel):
                cands.append(((0, int(r.slice is not None), len(r.key)), r))
        cands = [c for c in cands if c[1].slice is None or c[1].slice == k]
        return max(cands, key=lambda c: c[0])[1] if cands else None


def _plan_volume(
    vol: Volume, labels: _Labels | None, options: dict[str, Any], source: Path, pid: Pseudonymizer,
    skipped: list[Skip],
) -> list[SliceJob]:
    chosen = select_slices(len(vol.slices), options["slices"])
    jobs: list[SliceJob] = []
    niftis: dict[int, np.ndarray | str] = {}
    for k in chosen:
        rel, frame = vol.slices[k]
        row = labels.best(vol, k, rel) if labels else None
        if row is None:
            if options["unlabelled"] == "normal":
                jobs.append(SliceJob(k, rel, frame, 0, "good"))
            else:
                skipped.append(Skip(f"{vol.key}/{k:04d}", "no label for this slice in labels.csv"))
            continue
        labels.used.add(row.row)  # type: ignore[union-attr]
        atype = row.anomaly_type or "lesion"
        label = row.label if row.label is not None else -1
        if row.mask and row.mask.lower().endswith(_NIFTI):
            if row.row not in niftis:
                try:
                    niftis[row.row] = nifti_on_grid(source / row.mask, vol)
                except (MaskError, FileNotFoundError) as e:
                    niftis[row.row] = str(e) if isinstance(e, MaskError) else "NIfTI mask file not found"
            grid = niftis[row.row]
            if isinstance(grid, str):
                skipped.append(Skip(f"{vol.key}/{k:04d}", grid))
                continue
            m = grid[k]
            jobs.append(SliceJob(k, rel, frame, int(m.any()), atype, None, (np.packbits(m), m.shape)))
        elif row.mask:
            if not (source / row.mask).is_file():
                skipped.append(Skip(f"{vol.key}/{k:04d}", "mask file named in labels.csv not found"))
                continue
            jobs.append(SliceJob(k, rel, frame, label, atype, row.mask))
        else:
            jobs.append(SliceJob(k, rel, frame, int(row.label or 0), atype))
    return jobs


def _renders(options: dict[str, Any], rows: list[LabelRow]) -> Any:
    """``rel -> bool``: may the scan render this file's slices right away?

    Yes when every slice is kept (``slices: all``) and the file can end up in the output
    (with ``unlabelled: skip``, only files that a labels row names or lies above); a slice
    rendered for nothing is deleted with the staging folder.
    """
    if str(options["slices"]).strip().lower() != "all":
        return lambda rel: False
    keys = {r.key for r in rows if not r.by_id}
    if not options["labels"] or options["unlabelled"] != "skip" or any(r.by_id for r in rows) or "." in keys:
        return lambda rel: True

    def named(rel: str) -> bool:  # labels.covers for every row at once
        parts = rel.split("/")
        return rel in keys or any("/".join(parts[:i]) in keys for i in range(1, len(parts)))

    return named


def ingest_dicom(
    source: Path, out_dir: Path, options: dict[str, Any], salt: bytes, bar: Any = None
) -> tuple[list[Record], list[Skip], dict[str, Any]]:
    """Ingest every DICOM image below ``source`` into ``out_dir`` (see module doc)."""
    stage = out_dir / ".stage"
    stage.mkdir(parents=True, exist_ok=True)
    try:
        return _ingest_dicom(source, out_dir, options, salt, bar, stage)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _ingest_dicom(
    source: Path, out_dir: Path, options: dict[str, Any], salt: bytes, bar: Any, stage: Path
) -> tuple[list[Record], list[Skip], dict[str, Any]]:
    pid = Pseudonymizer(salt)
    workers = int(options["workers"]) or default_workers()
    files = [p.relative_to(source).as_posix() for p in raw_files(source)]
    skipped: list[Skip] = []

    # Labels first: the CSV and the masks it names are inputs, not stray non-DICOM files.
    rows: list[LabelRow] = []
    if options["labels"]:
        lpath = source / options["labels"]
        if not lpath.is_file():
            raise DicomError(
                f"labels file {options['labels']!r} not found in the source folder; set options.labels "
                "(or labels: null with unlabelled: normal for unlabelled data)"
            )
        rows, bad = read_labels(lpath)
        skipped += [Skip(f"labels.csv row {i}", "unparseable labels row") for i in bad]
    referenced = {options["labels"]} | {r.mask for r in rows if r.mask}
    candidates = [f for f in files if f not in referenced]

    spec = RenderSpec({k: parse_display(v) for k, v in options["display"].items()}, options["size"],
                      options["resize"], bool(options["allow_burned_in"]), str(stage))
    renders = _renders(options, rows)
    args = [(str(source / rel), rel, i, spec if renders(rel) else None) for i, rel in enumerate(candidates)]
    task_bar = bar.add_task("DICOM files", total=len(candidates)) if bar is not None else None
    headers: list[Header] = []
    scanned: dict[str, tuple[int, Scanned]] = {}
    seen_sop: set[str] = set()
    with ExitStack() as stack:
        client = stack.enter_context(dask_client(options["dask"])) if options.get("dask") else None
        pool = runner(workers, client)
        stack.callback(pool.close)
        for i, res in enumerate(pool.map(scan_file, args)):
            if bar is not None:
                bar.advance(task_bar, 1)
            h = res.header
            if h is None:
                skipped.append(Skip(pid.id("file", res.rel), res.reason or "unreadable"))
                continue
            if h.burned_in and not options["allow_burned_in"]:
                skipped.append(Skip(pid.id("file", h.rel), "burned-in annotation (pixels may show identifiers)"))
                continue
            if h.sop_uid and h.sop_uid in seen_sop:
                skipped.append(Skip(pid.id("file", h.rel), "duplicate file (same SOP instance as another file)"))
                continue
            seen_sop.add(h.sop_uid)
            headers.append(h)
            scanned[h.rel] = (i, res)
        if not headers:
            raise DicomError(f"no DICOM images found below {source.name}/ ({len(skipped)} files skipped)")

        volumes = group_volumes(headers, pid)
        labels = _Labels.build(rows, {h.rel for h in headers}) if options["labels"] else None
        tasks: list[Task] = []
        percentiles = tuple(float(p) for p in options["percentiles"])
        for vol in volumes:
            jobs = _plan_volume(vol, labels, options, source, pid, skipped)
            if not jobs:
                continue
            for job in jobs:  # slices the scan rendered: move the PNG (or report the failure)
                i, res = scanned[job.rel]
                assert res.header is not None
                job.shape = (res.header.rows, res.header.cols)
                if job.frame in res.staged:
                    failure = res.staged[job.frame]
                    if failure is None:
                        job.staged = stage_path(str(stage), i, job.frame)
                        job.digest = res.digests.get(job.frame)
                    else:
                        job.failure = failure
            cls = str(options["class_name"] or vol.modality.lower())
            display = spec.display(vol.modality)
            file_ids = {h.rel: pid.id("file", h.rel) for h in vol.files}
            # Percentile display needs the whole volume in one unit; windows can be split.
            step = len(jobs) if display[0] == "percentile" else max(1, int(options["chunk"]))
            for j in range(0, len(jobs), step):
                tasks.append(Task(str(source), str(out_dir), cls, vol.study, vol.key, display, percentiles,  # type: ignore[arg-type]
                                  options["size"], options["resize"], file_ids, jobs[j : j + step],
                                  {h.rel: h.transfer_syntax for h in vol.files}))
        if labels is not None:
            for r in rows:
                if r.row not in labels.used:
                    skipped.append(Skip(f"labels.csv row {r.row}", "labels row names an unknown file or id"))
        if options["unlabelled"] == "error":
            missing = [s for s in skipped if s.reason.startswith("no label")]
            if missing:
                raise DicomError(f"{len(missing)} slices have no label in labels.csv (option unlabelled: error)")

        n_slices = sum(len(t.jobs) for t in tasks)
        slice_bar = bar.add_task("DICOM slices", total=n_slices) if bar is not None else None
        results: list[tuple[list[dict[str, Any]], list[tuple[str, str]], dict[str, str]]] = []
        for t, res in zip(tasks, pool.map(run_task, tasks), strict=True):
            results.append(res)
            if bar is not None:
                bar.advance(slice_bar, len(t.jobs))
    records: list[Record] = []
    digests: dict[str, str] = {}
    for recs, skips, written in results:
        records += [Record(**r) for r in recs]
        skipped += [Skip(w, r) for w, r in skips]
        digests.update(written)
    # A file that failed in several chunks is reported once.
    skipped = list(dict.fromkeys(skipped))

    phi = Counter(g for h in headers for g in h.phi)
    extra = {
        "dicom": {
            "files_seen": len(files),
            "dicom_images": len(headers),
            "volumes": len(volumes),
            "modalities": dict(sorted(Counter(h.modality for h in headers).items())),
            "transfer_syntaxes": dict(sorted(Counter(h.transfer_syntax for h in headers).items())),
            "phi_tag_groups_dropped": {"files_with_group": dict(sorted(phi.items())), "note":
                                       "no header value is written anywhere; ids are salted pseudonyms"},
            "label_rows": len(rows),
            "slices_written": len(records),
        },
        "format_version": FORMAT_VERSION,
        "digests": digests,
    }
    return records, skipped, extra
