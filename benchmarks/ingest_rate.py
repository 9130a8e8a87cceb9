"""DICOM ingest rate vs a bare pydicom read + decode loop over the same files.

Writes a synthetic CT study (512 x 512 slices, 12-bit, PHI-bearing tags like a PACS
export) into a temporary folder, then measures in one run, alternating the two:

* bare:   ``pydicom.dcmread(f).pixel_array`` for every file, one process;
* ingest: the full ``entroad`` DICOM ingest (one read per file for header, de-identification
          and pixels; HU, window, native-resolution square PNG, manifest, audit) with its
          default workers (one process per core).

Prints both rates in slices/s and the CPU time per slice of each (all threads of the
process and of its worker processes; on a machine shared with other work these are
steadier than the wall-clock rates); the last line is ``ingest_ratio=<ingest / bare>``
(wall clock).
    python benchmarks/ingest_rate.py [--slices 384] [--size N] [--syntax explicit|rle|j2k]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _j2k(ds) -> None:
    """Re-encode the pixels as lossless JPEG 2000 with Pillow (openjpeg), as PACS exports do."""
    import io

    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    buf = io.BytesIO()
    Image.fromarray(ds.pixel_array.astype(np.uint16)).save(buf, format="JPEG2000", irreversible=False, no_jp2=True)
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless


def write_series(root: Path, n: int, syntax: str) -> list[Path]:
    import pydicom
    from pydicom.uid import RLELossless, generate_uid

    from entroad.data.synthetic.dicom_study import head_phantom, write_dicom_image

    rng = np.random.default_rng(0)
    # One study, one series, as a scanner writes it (without these shared UIDs every slice
    # would be a one-slice series of its own, with its own output folder).
    study, series = generate_uid(entropy_srcs=["bench-study"]), generate_uid(entropy_srcs=["bench-series"])
    files = []
    for k in range(n):
        hu = head_phantom(512, n, k, rng)
        path = root / "PATIENT_SMITH_J" / "CT_SERIES" / f"IM{k:04d}.dcm"
        files.append(write_dicom_image(path, np.clip(hu + 1024, 0, 4095), "CT", seed=k, RescaleSlope=1,
                                       RescaleIntercept=-1024, InstanceNumber=k + 1,
                                       StudyInstanceUID=study, SeriesInstanceUID=series,
                                       ImagePositionPatient=[0, 0, 5.0 * k], ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
                                       PixelSpacing=[0.5, 0.5]))
        if syntax != "explicit":
            ds = pydicom.dcmread(path)
            if syntax == "rle":
                ds.compress(RLELossless)
            else:
                _j2k(ds)
            ds.save_as(path)
    return files


def bare_loop(files: list[Path]) -> tuple[float, float]:
    """(wall, CPU) seconds of the bare loop."""
    import pydicom

    t0, c0 = time.perf_counter(), time.process_time()
    for f in files:
        _ = pydicom.dcmread(f).pixel_array
    return time.perf_counter() - t0, time.process_time() - c0


def _cpu() -> float:
    """CPU seconds of this process and of its finished child processes (the ingest's workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def ingest_once(src: Path, out: Path, size: int | None) -> tuple[float, float, int]:
    from entroad.config import DatasetSpec
    from entroad.data.ingest import ingest_spec

    spec = DatasetSpec(name="bench", format="dicom", source=str(src),
                       options={"labels": None, "unlabelled": "normal", "size": size})
    t0, c0 = time.perf_counter(), _cpu()
    res = ingest_spec(spec, out / "processed" / "bench", out, force=True, progress=False)
    return time.perf_counter() - t0, _cpu() - c0, res.counts["images"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # 384 slices, a typical CT series: the per-ingest fixed cost (~30 ms: worker start,
    # code-version hash, manifest, audit, publish) is then ~6% of the time, as it is for
    # real archives; at 96 slices it is a fifth and the figure measures start-up
    ap.add_argument("--slices", type=int, default=384)
    ap.add_argument("--size", type=int, default=None, help="output side (default: native, padded to a square)")
    ap.add_argument("--syntax", choices=["explicit", "rle", "j2k"], default="explicit",
                    help="transfer syntax of the files: uncompressed (default), RLE, lossless JPEG 2000")
    ap.add_argument("--repeats", type=int, default=5, help="alternating rounds; best of N for both loops")
    args = ap.parse_args()
    os.environ.setdefault("ENTROAD_DEID_SALT", "benchmark-salt")
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "raw", Path(tmp) / "out"
        files = write_series(src, args.slices, args.syntax)
        for f in files:  # same page-cache state for both measurements
            f.read_bytes()
        # Alternate the two loops (bare, ingest, bare, ingest, ...) so a change in machine
        # load hits both alike; best of N each. A fresh data root per ingest: a first ingest,
        # not the replacement of an old version.
        bares, runs = [], []
        for i in range(args.repeats):
            bares.append(bare_loop(files))
            runs.append(ingest_once(src, out / str(i), args.size))
        bare, bare_cpu = min(t for t, _ in bares), min(c for _, c in bares)
        ingest_s, ingest_cpu = min(t for t, _, _ in runs), min(c for _, c, _ in runs)
        n = runs[0][2]
    assert n == args.slices, f"ingest wrote {n} of {args.slices} slices"
    bare_rate, ingest_rate = len(files) / bare, n / ingest_s
    print(f"files: {len(files)} CT slices 512x512 ({args.syntax}), output {args.size or 'native'} px PNG")
    print(f"cpu cores: {os.cpu_count()}")
    print(f"bare pydicom read+decode: {bare_rate:.1f} slices/s ({bare / len(files) * 1e3:.2f} ms/slice, 1 process)")
    print(f"entroad ingest:           {ingest_rate:.1f} slices/s ({ingest_s / n * 1e3:.2f} ms/slice)")
    print(f"cpu per slice: bare {bare_cpu / len(files) * 1e3:.2f} ms, ingest {ingest_cpu / n * 1e3:.2f} ms")
    print(f"ingest_ratio={ingest_rate / bare_rate:.3f}")


if __name__ == "__main__":
    main()
