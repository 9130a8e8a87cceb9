"""DICOM ingest: a folder of DICOM files -> de-identified 8-bit PNG slices + manifest records.

Pipeline: header pass (:mod:`entroad.data.dicom_scan`: non-DICOM and non-image files are
skipped and reported) -> volumes (series stacks, multi-frame files) -> labels/masks
(:mod:`entroad.data.dicom_labels`, :mod:`entroad.data.dicom_masks`) -> slice selection ->
pixels (:mod:`entroad.data.dicom_pixels`) in worker processes, each writing its PNGs.

Pixel data is read with ``pydicom.pixels.pixel_array(path, ds_out=...)``, which parses only
the pixel-related elements and decodes in one pass; fixed windows are applied through a
per-stored-value lookup table; grey slices are written as palette PNGs (RGB by channel
replication, one byte per pixel to compress). MONAI's ``LoadImage(reader="PydicomReader")`` is the
reference the tests compare our HU volumes against. Compressed transfer syntaxes decode
through pydicom's plugins (Pillow, pylibjpeg); a file whose plugin is missing is skipped
with a reason naming the package to install.

Nothing from a header reaches the output: file names are ``<class>/<study id>/<series
id>/<slice>.png`` with salted pseudonymous ids, skipped files are reported by pseudonymous
file id, and the audit holds counts only.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from entroad.data.deid import Pseudonymizer
from entroad.data.dicom_labels import LabelRow, covers, read_labels
from entroad.data.dicom_masks import MaskError, nifti_on_grid, png_mask
from entroad.data.dicom_pixels import (
    file_window,
    fit_size,
    modality_values,
    parse_display,
    percentile_range,
    percentile_uint8,
    rescale,
    to_rgb,
    voi_lut_uint8,
    window_uint8,
)
from entroad.data.dicom_scan import Header, Volume, group_volumes, header_or_reason, select_slices
from entroad.data.fingerprint import raw_files
from entroad.data.formats.base import Skip
from entroad.data.images import encode_png, scale_to_uint8
from entroad.data.manifest import Record
from entroad.errors import ConfigError, DicomError

DICOM_DOMAIN = "medical"
DICOM_OPTIONS: dict[str, Any] = {
    "labels": "labels.csv",  # CSV relative to the source folder; null = no labels
    "unlabelled": "skip",  # slices without a label: skip | normal | error
    # Display per modality: window preset | "C/W" | file | percentile.
    "display": {"CT": "brain", "MR": "percentile", "default": "file"},
    "percentiles": [1.0, 99.0],
    "slices": "all",  # all | middle | every:K | range:A:B
    "size": 518,  # output side in pixels ("sized for the model")
    "resize": "pad",  # pad (keep aspect, black borders) | stretch
    "class_name": None,  # default: the modality in lower case ("ct", "mr")
    "allow_burned_in": False,  # BurnedInAnnotation=YES files may show names in pixels
    "workers": 0,  # 0 = one process per CPU core
    "chunk": 16,  # slices per work unit when a volume can be split
    "salt": None,  # prefer $ENTROAD_DEID_SALT or salt_file: params.yaml is committed
    "salt_file": None,
}
_NIFTI = (".nii", ".nii.gz")


def resolve_dicom_options(given: dict[str, Any]) -> dict[str, Any]:
    unknown = set(given) - set(DICOM_OPTIONS)
    if unknown:
        raise ConfigError(f"format 'dicom': unknown option(s) {sorted(unknown)}; known: {sorted(DICOM_OPTIONS)}")
    opts = {**DICOM_OPTIONS, **given}
    display = {**DICOM_OPTIONS["display"], **{str(k).upper() if k != "default" else k: v for k, v in (given.get("display") or {}).items()}}
    try:
        for v in display.values():
            parse_display(v)
        select_slices(3, opts["slices"])
    except ValueError as e:
        raise ConfigError(f"format 'dicom': {e}") from None
    if opts["unlabelled"] not in ("skip", "normal", "error"):
        raise ConfigError("format 'dicom': unlabelled must be skip | normal | error")
    if opts["resize"] not in ("pad", "stretch"):
        raise ConfigError("format 'dicom': resize must be pad | stretch")
    if int(opts["size"]) < 4:
        raise ConfigError("format 'dicom': size must be >= 4 pixels")
    opts["display"] = display
    return opts


# --------------------------------------------------------------------------------------------
# Work units (picklable) and the worker
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


@dataclass
class Task:
    source: str
    out_dir: str
    cls: str
    study: str
    series: str
    display: tuple[str, tuple[float, float] | None]
    percentiles: tuple[float, float]
    size: int
    resize: str
    file_ids: dict[str, str]
    jobs: list[SliceJob] = field(default_factory=list)
    syntaxes: dict[str, str] = field(default_factory=dict)  # rel -> transfer syntax name


class DecodeProblem(Exception):
    pass


def decode_reason(e: Exception, ts_name: str) -> str:
    """PHI-free reason for a pixel-decode failure, naming the plugin to install if that is it."""
    msg = str(e)
    needs = re.findall(r"(\S+) - requires ([^\n]+)", msg)
    if needs:
        pkgs = "; ".join(f"{req.strip().rstrip('.')}" for _, req in needs)
        return f"cannot decode {ts_name} pixel data (install a pixel-data plugin: {pkgs})"
    if "no pixel data decoders" in msg.lower() or "not supported" in msg.lower():
        return f"cannot decode {ts_name} pixel data (no decoder for this transfer syntax)"
    return f"corrupt or truncated pixel data ({type(e).__name__})"


# Read besides group 0028 (pixel module, rescale, windows, LUTs): the functional groups of
# enhanced multi-frame files, where their rescale lives.
_PIXEL_EXTRA_TAGS = [0x52009229, 0x52009230]  # Shared / PerFrame Functional Groups Sequence


def _decode(path: Path, ts_name: str) -> tuple[Any, np.ndarray]:
    """(dataset with the pixel-related elements only, decoded pixels) of one file.

    ``pydicom.pixels.pixel_array(path, ds_out=...)`` parses only what decoding and display
    need (no identifying element is even converted) and decodes in the same pass.
    """
    from pydicom.dataset import Dataset
    from pydicom.pixels import pixel_array

    ds = Dataset()
    try:
        arr = pixel_array(path, ds_out=ds, specific_tags=_PIXEL_EXTRA_TAGS)
    except Exception as e:
        raise DecodeProblem(decode_reason(e, ts_name)) from None
    if str(ds.get("PhotometricInterpretation", "")) == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = scale_to_uint8(np.asarray(apply_color_lut(arr, ds)))
    return ds, arr


def _display(ds: Any, frame: np.ndarray, values: np.ndarray, mode: str, window: Any, prange: Any) -> np.ndarray:
    if mode == "window":
        return window_uint8(values, *window)
    if mode == "percentile":
        return percentile_uint8(values, prange)
    if "VOILUTSequence" in ds:  # mode "file"
        return voi_lut_uint8(ds, frame)
    fw = file_window(ds)
    if fw is not None:
        return window_uint8(values, *fw)
    return percentile_uint8(values, percentile_range(values, 1.0, 99.0))


def _window_lut(ds: Any, dtype: np.dtype, window: tuple[float, float]) -> np.ndarray | None:
    """Stored value -> display byte for every value of a <= 16-bit integer dtype, or None.

    The same float32 operations as :func:`modality_values` + :func:`window_uint8`, applied
    once per possible stored value instead of once per pixel, so ``lut[stored]`` gives
    identical bytes at a fraction of the cost. Files with a Modality LUT Sequence take the
    general path.
    """
    if dtype.kind not in "ui" or dtype.itemsize > 2 or "ModalityLUTSequence" in ds:
        return None
    unsigned = np.dtype(f"u{dtype.itemsize}")
    stored = np.arange(2 ** (8 * dtype.itemsize), dtype=np.int64).astype(unsigned).view(dtype)
    return window_uint8(modality_values(ds, stored), *window)


def _lut_key(ds: Any, dtype: np.dtype, window: tuple[float, float]) -> tuple[Any, ...]:
    return (dtype.str, rescale(ds), window)


def _apply_lut(lut: np.ndarray, frame: np.ndarray) -> np.ndarray:
    idx = frame.view(np.dtype(f"u{frame.dtype.itemsize}")) if frame.dtype.kind == "i" else frame
    return lut[idx]


def _display_window(ds: Any, mode: str, window: Any) -> tuple[float, float] | None:
    """The linear window a slice is shown with, when its display is one (else None)."""
    if mode == "window":
        return window
    if mode == "file" and "VOILUTSequence" not in ds:
        return file_window(ds)
    return None


def run_task(task: Task) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Decode, display, resize and write every slice of ``task``; return records and skips."""
    src, out = Path(task.source), Path(task.out_dir)
    mode, window = task.display
    cache: dict[str, tuple[Any, np.ndarray] | str] = {}
    staged: list[tuple[SliceJob, Any, np.ndarray, np.ndarray | None]] = []
    skips: list[tuple[str, str]] = []
    luts: dict[tuple[Any, ...], np.ndarray | None] = {}
    for job in task.jobs:
        got = cache.get(job.rel)
        if got is None:
            try:
                got = _decode(src / job.rel, task.syntaxes.get(job.rel, "unknown"))
            except DecodeProblem as e:
                got = str(e)
                skips.append((task.file_ids[job.rel], got))
            # Multi-frame files serve many jobs: keep them decoded; single frames need no cache.
            cache[job.rel] = got if job.frame is not None else "done"
        if isinstance(got, str):
            continue
        ds, arr = got
        frame = arr
        if job.frame is not None:  # multi-frame: pixel_array is (frames, rows, cols[, 3])
            if arr.ndim < 3 or arr.shape[0] <= job.frame:
                skips.append((task.file_ids[job.rel], "frame missing from pixel data"))
                continue
            frame = arr[job.frame]
        win = None if frame.ndim == 3 else _display_window(ds, mode, window)
        if win is not None:  # fast path: one table lookup per pixel
            key = _lut_key(ds, frame.dtype, win)
            if key not in luts:
                luts[key] = _window_lut(ds, frame.dtype, win)
            lut = luts[key]
            if lut is not None:
                staged.append((job, ds, frame, _apply_lut(lut, frame)))
                continue
        values = None if frame.ndim == 3 else modality_values(ds, frame)
        staged.append((job, ds, frame, values))
    prange = None
    if mode == "percentile":
        grey = [v for _, _, f, v in staged if v is not None and f.ndim == 2]
        prange = percentile_range(np.concatenate([g.ravel() for g in grey]), *task.percentiles) if grey else (0.0, 1.0)
    records: list[dict[str, Any]] = []
    for job, ds, frame, values in staged:
        if values is None:
            img8 = scale_to_uint8(frame)
        elif values.dtype == np.uint8:  # already displayed through a window table
            img8 = values
        else:
            img8 = _display(ds, frame, values, mode, window, prange)
            if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
                img8 = 255 - img8
        rows, cols = frame.shape[:2]
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
        shown = fit_size(img8, task.size, task.resize)
        # Grey slices: RGB by channel replication through a grey palette (see encode_png).
        png = encode_png(shown, grey_rgb=True, rle=True) if shown.ndim == 2 else encode_png(to_rgb(shown))
        _write(out / img_rel, png)
        mask_rel = None
        if label == 1 and mask is not None:
            mask_rel = f"masks/{stem}.png"
            m8 = fit_size(mask.astype(np.uint8) * 255, task.size, task.resize, nearest=True)
            _write(out / mask_rel, encode_png(m8, rle=True))
        records.append({
            "image": img_rel, "mask": mask_rel, "label": label, "cls": task.cls, "split": "test",
            "source_id": f"{task.series}/{job.index:04d}",
            "anomaly_type": job.anomaly_type if label == 1 else "good",
        })
    return records, skips


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


# --------------------------------------------------------------------------------------------
# Orchestration (parent process)
# --------------------------------------------------------------------------------------------
def _pool(workers: int) -> ProcessPoolExecutor:
    # fork: workers start in milliseconds and inherit the imports; they never log or print.
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


def _headers(source: Path, rels: list[str], workers: int) -> list[Header | tuple[str, str]]:
    args = [(str(source / r), r) for r in rels]
    if workers <= 1 or len(args) < 64:
        return [header_or_reason(a) for a in args]
    with _pool(workers) as pool:
        return list(pool.map(header_or_reason, args, chunksize=max(8, len(args) // (workers * 8))))


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


def ingest_dicom(
    source: Path, out_dir: Path, options: dict[str, Any], salt: bytes, bar: Any = None
) -> tuple[list[Record], list[Skip], dict[str, Any]]:
    """Ingest every DICOM image below ``source`` into ``out_dir`` (see module doc)."""
    pid = Pseudonymizer(salt)
    workers = int(options["workers"]) or (os.cpu_count() or 1)
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

    task_bar = bar.add_task("DICOM headers", total=len(candidates)) if bar is not None else None
    headers: list[Header] = []
    seen_sop: set[str] = set()
    for res in _headers(source, candidates, workers):
        if bar is not None:
            bar.advance(task_bar, 1)
        if isinstance(res, tuple):
            skipped.append(Skip(pid.id("file", res[0]), res[1]))
            continue
        if res.burned_in and not options["allow_burned_in"]:
            skipped.append(Skip(pid.id("file", res.rel), "burned-in annotation (pixels may show identifiers)"))
            continue
        if res.sop_uid and res.sop_uid in seen_sop:
            skipped.append(Skip(pid.id("file", res.rel), "duplicate file (same SOP instance as another file)"))
            continue
        seen_sop.add(res.sop_uid)
        headers.append(res)
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
        cls = str(options["class_name"] or vol.modality.lower())
        display = parse_display(options["display"].get(vol.modality, options["display"]["default"]))
        file_ids = {h.rel: pid.id("file", h.rel) for h in vol.files}
        # Percentile display needs the whole volume in one unit; windows can be split.
        step = len(jobs) if display[0] == "percentile" else max(1, int(options["chunk"]))
        for i in range(0, len(jobs), step):
            tasks.append(Task(str(source), str(out_dir), cls, vol.study, vol.key, display, percentiles,  # type: ignore[arg-type]
                              int(options["size"]), options["resize"], file_ids, jobs[i : i + step],
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
    results: list[tuple[list[dict[str, Any]], list[tuple[str, str]]]] = []
    if workers > 1 and len(tasks) > 1:
        with _pool(min(workers, len(tasks))) as pool:
            for t, res in zip(tasks, pool.map(run_task, tasks), strict=False):
                results.append(res)
                if bar is not None:
                    bar.advance(slice_bar, len(t.jobs))
    else:
        for t in tasks:
            results.append(run_task(t))
            if bar is not None:
                bar.advance(slice_bar, len(t.jobs))
    records: list[Record] = []
    for recs, skips in results:
        records += [Record(**r) for r in recs]
        skipped += [Skip(w, r) for w, r in skips]
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
        }
    }
    return records, skipped, extra
