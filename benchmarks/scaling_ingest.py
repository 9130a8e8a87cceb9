"""DICOM ingest on 1 vs 2 local Dask workers (one thread each) over the same input.

The input: uncompressed 512 x 512 CT slices (12-bit, PHI-bearing tags) from
``entroad.data.synthetic``, in series of 64 slices, enough that one worker needs >= 20 s,
so that fixed costs (scheduler start, fingerprint, manifest) do not decide the figure. The
cluster start is timed on its own and left out of the rate; the rate covers the whole
ingest (scan, de-identification, pixels, PNGs, manifest, audit).

    python benchmarks/scaling_ingest.py [--slices 6400]

prints the rates, the cluster starts and ``ingest_scaling=<slices/s with 2 / with 1>``.
:func:`measure_ingest` is what ``benchmarks/scaling.py`` calls.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_SLICES = 6400  # > 20 s for one worker on an idle 2-core machine (~2.3 ms of CPU a slice)
SERIES_LEN = 64
_INPUT: dict[int, Path] = {}  # slices -> raw folder, written once per process


def write_input(root: Path, n: int) -> Path:
    """``n`` slices in series of :data:`SERIES_LEN` under ``root``: 16 distinct phantom slices
    written by the synthetic-study writer, copied with their own UIDs and positions (a
    fresh file per slice costs ~10x more and would dominate the benchmark's run time)."""
    import pydicom
    from pydicom.uid import generate_uid

    from entroad.data.synthetic.dicom_study import head_phantom, write_dicom_image

    rng = np.random.default_rng(0)
    templates = []
    for k in range(16):
        hu = head_phantom(512, 16, k, rng)
        path = write_dicom_image(root.parent / "templates" / f"T{k:02d}.dcm", np.clip(hu + 1024, 0, 4095), "CT",
                                 seed=k, RescaleSlope=1, RescaleIntercept=-1024, ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
                                 PixelSpacing=[0.5, 0.5])
        templates.append(pydicom.dcmread(path))
    study = generate_uid(entropy_srcs=["scaling-study"])
    for k in range(n):
        s, j = divmod(k, SERIES_LEN)
        ds = templates[k % 16]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["scaling-sop", str(k)])
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid(entropy_srcs=["scaling-series", str(s)])
        ds.InstanceNumber, ds.ImagePositionPatient = j + 1, [0, 0, 5.0 * j]
        path = root / f"PATIENT_{s // 8:03d}" / f"SERIES_{s:04d}" / f"IM{j:04d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path)
    return root


def _input(slices: int) -> Path:
    if slices not in _INPUT:
        root = Path(tempfile.mkdtemp(prefix="entroad-scaling-ingest-"))
        _INPUT[slices] = write_input(root / "raw", slices)
    return _INPUT[slices]


def measure_ingest(workers: int, slices: int = DEFAULT_SLICES) -> dict:
    """Ingest the benchmark input on ``workers`` local Dask workers (one thread each).

    Returns ``{"workers", "slices", "seconds", "slices_per_s", "cluster_start_s"}``.
    """
    from entroad.cluster import dask_client
    from entroad.config import DatasetSpec
    from entroad.data.ingest import ingest_spec

    src = _input(slices)
    out = Path(tempfile.mkdtemp(prefix=f"entroad-scaling-ingest-{workers}w-"))
    spec = DatasetSpec(name="bench", format="dicom", source=str(src),
                       options={"labels": None, "unlabelled": "normal", "salt": "benchmark-salt"})
    try:
        t0 = time.perf_counter()
        with dask_client(f"local:{workers}") as client:
            client.wait_for_workers(workers)
            start = time.perf_counter() - t0
            t1 = time.perf_counter()
            res = ingest_spec(spec, out / "processed" / "bench", out, force=True, progress=False,
                              dask=client.scheduler.address)
            seconds = time.perf_counter() - t1
    finally:
        shutil.rmtree(out, ignore_errors=True)
    n = res.counts["images"]
    assert n == slices, f"ingest wrote {n} of {slices} slices"
    return {"workers": workers, "slices": n, "seconds": round(seconds, 2), "slices_per_s": round(n / seconds, 1),
            "cluster_start_s": round(start, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=DEFAULT_SLICES)
    args = ap.parse_args()
    t0 = time.perf_counter()
    _input(args.slices)
    print(f"input: {args.slices} CT slices 512x512 (uncompressed), series of {SERIES_LEN}; "
          f"written in {time.perf_counter() - t0:.1f} s; cpu cores: {os.cpu_count()}")
    try:
        one, two = measure_ingest(1, args.slices), measure_ingest(2, args.slices)
    finally:
        for root in _INPUT.values():
            shutil.rmtree(root.parent, ignore_errors=True)
    for r in (one, two):
        print(f"{r['workers']} worker(s): {r['slices_per_s']} slices/s ({r['seconds']} s), "
              f"cluster start {r['cluster_start_s']} s")
    if one["seconds"] < 20:
        print(f"note: 1 worker took {one['seconds']} s (< 20 s); raise --slices", file=sys.stderr)
    print(f"ingest_scaling={two['slices_per_s'] / one['slices_per_s']:.3f}")


if __name__ == "__main__":
    main()
