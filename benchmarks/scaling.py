"""Scale-out on Dask: the same job on 1 local worker, then on 2 (one thread each).

    python benchmarks/scaling.py                   # predict (tiny model) + DICOM ingest
    python benchmarks/scaling.py --only predict    # prediction only

Prediction: ``entroad.predict.predict(..., dask=<scheduler>)`` on a folder of synthetic PNGs
with the tiny random-init backbone. The input is sized from a short probe so that one worker
needs at least ``--target-s`` seconds: fixed costs (the driver loading the model, listing,
merging) must not decide the figure. Each cluster's start is timed apart from the job, and
every worker has imported torch and loaded the model (a warm-up job) before the clock starts.
``predict_scaling`` uses the whole job's wall time; the driver's fixed part (the same call once
every shard is done) is printed too, with the scaling of the scoring alone.

Ingestion: ``benchmarks/scaling_ingest.py`` (uncompressed 512 x 512 CT slices in series of
64), sized the same way from a probe; cluster starts are timed apart from the ingest.

Prints ``predict_scaling=<images/s with 2 ÷ with 1>`` and ``ingest_scaling=<slices/s with 2 ÷
with 1>`` with the start times and rates. The goal is >= 1.6 on 2 cores; other load on the
machine lowers it.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # scaling_ingest

import dask  # noqa: E402
import torch  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

from entroad.checkpoint import save_checkpoint  # noqa: E402
from entroad.config import Params, params_from_dict  # noqa: E402
from entroad.data.synthetic import write_processed_dataset  # noqa: E402
from entroad.model import EntroAD  # noqa: E402
from entroad.predict import predict  # noqa: E402

TINY = {
    "backbone": {"name": "entroad-tiny", "pretrained": None, "image_size": 224, "random_init_fallback": False,
                 "device": "cpu", "precision": "fp32"},
    "evaluation": {"batch_size": 16, "num_workers": 0},  # Dask workers are the parallelism
}
SHARD_SIZE = 64
BASE_IMAGES = 48  # distinct synthetic images, copied under new names up to the input size


def tiny_params() -> Params:
    return params_from_dict(TINY, {})


def make_checkpoint(root: Path) -> Path:
    torch.manual_seed(0)
    out = root / "model"
    save_checkpoint(EntroAD.build(tiny_params(), device="cpu"), out)
    return out


def make_site(root: Path, n: int) -> Path:
    """A folder of ``n`` PNGs (256 px) in sub-folders of 500."""
    base = root / "base"
    if not base.is_dir():
        write_processed_dataset(base, "src", ["stripes", "dots"], BASE_IMAGES // 4, BASE_IMAGES // 4, 256, seed=0)
    pngs = sorted((base / "src" / "images").rglob("*.png"))
    site = root / f"site-{n}"
    if not site.is_dir():
        for i in range(n):
            dst = site / f"part{i // 500:03d}" / f"img{i:06d}.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(pngs[i % len(pngs)], dst)
    return site


def measure_predict(workers: int, site: Path, checkpoint: Path, workdir: Path) -> dict:
    """Start a local cluster of ``workers`` single-thread processes, warm it up, then time one
    prediction job over ``site``. Returns start_s, job_s, images and images_per_s."""
    params = tiny_params()
    t0 = time.perf_counter()
    with dask.config.set({"distributed.worker.daemon": False}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    try:
        with Client(cluster) as client:
            client.wait_for_workers(workers)
            start_s = time.perf_counter() - t0
            # warm-up: one shard per worker at least, so every worker has loaded the model
            warm = make_site(workdir, 4 * workers)
            t1 = time.perf_counter()
            predict(checkpoint, warm, workdir / f"warm-{workers}", params=params, overlays=False, progress=False,
                    restart=True, dask=cluster.scheduler_address, shard_size=1)
            warm_s = time.perf_counter() - t1
            loaded = sorted(client.run(_models_loaded).values())
            out = workdir / f"out-{workers}"
            t2 = time.perf_counter()
            res = predict(checkpoint, site, out, params=params, overlays=False, progress=False, restart=True,
                          dask=cluster.scheduler_address, shard_size=SHARD_SIZE)
            job_s = time.perf_counter() - t2
            # the same call with every shard done: what the driver itself costs (model identity,
            # listing, merge), paid once per job whatever the number of workers
            t3 = time.perf_counter()
            predict(checkpoint, site, out, params=params, overlays=False, progress=False,
                    dask=cluster.scheduler_address, shard_size=SHARD_SIZE)
            fixed_s = time.perf_counter() - t3
    finally:
        cluster.close()
    return {"workers": workers, "start_s": start_s, "warmup_s": warm_s, "models_loaded": loaded,
            "job_s": job_s, "fixed_s": fixed_s, "images": res.n_scored, "images_per_s": res.n_scored / job_s,
            "scoring_images_per_s": res.n_scored / max(job_s - fixed_s, 1e-9)}


def _models_loaded() -> int:
    from entroad.predict.distributed import models_loaded

    return models_loaded()


def predict_scaling(target_s: float, workdir: Path) -> float:
    ckpt = make_checkpoint(workdir)
    probe = measure_predict(1, make_site(workdir, 256), ckpt, workdir)
    n = max(256, math.ceil(probe["images_per_s"] * target_s * 1.15 / SHARD_SIZE) * SHARD_SIZE)
    print(f"probe: {probe['images_per_s']:.1f} images/s on 1 worker -> {n} images for >= {target_s:.0f} s", flush=True)
    site = make_site(workdir, n)
    runs = [measure_predict(w, site, ckpt, workdir) for w in (1, 2)]
    for r in runs:
        print(f"predict workers={r['workers']}: cluster start {r['start_s']:.1f} s, warm-up {r['warmup_s']:.1f} s "
              f"(models loaded per worker {r['models_loaded']}), job {r['job_s']:.1f} s for {r['images']} images "
              f"= {r['images_per_s']:.1f} images/s; driver's fixed part {r['fixed_s']:.1f} s, "
              f"scoring alone {r['scoring_images_per_s']:.1f} images/s", flush=True)
    if runs[0]["job_s"] < target_s:
        print(f"warning: 1 worker took {runs[0]['job_s']:.1f} s < {target_s:.0f} s (machine faster than the probe said)")
    net = runs[1]["scoring_images_per_s"] / runs[0]["scoring_images_per_s"]
    print(f"scaling of the scoring alone (driver's fixed part left out): {net:.2f}")
    return runs[1]["images_per_s"] / runs[0]["images_per_s"]


def ingest_scaling(target_s: float) -> float:
    from scaling_ingest import SERIES_LEN, measure_ingest

    probe = measure_ingest(1, 320)
    n = max(320, math.ceil(probe["slices_per_s"] * target_s * 1.3 / SERIES_LEN) * SERIES_LEN)
    print(f"probe: {probe['slices_per_s']:.1f} slices/s on 1 worker -> {n} slices for >= {target_s:.0f} s", flush=True)
    runs = [measure_ingest(w, n) for w in (1, 2)]
    for r in runs:
        print(f"ingest workers={r['workers']}: cluster start {r['cluster_start_s']:.1f} s, ingest {r['seconds']:.1f} s "
              f"for {r['slices']} slices = {r['slices_per_s']:.1f} slices/s", flush=True)
    if runs[0]["seconds"] < target_s:
        print(f"warning: 1 worker took {runs[0]['seconds']:.1f} s < {target_s:.0f} s (machine faster than the probe said)")
    return runs[1]["slices_per_s"] / runs[0]["slices_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["predict", "ingest"], help="Measure one half only.")
    ap.add_argument("--target-s", type=float, default=20.0, help="Seconds one worker must need (input sizing).")
    ap.add_argument("--workdir", type=Path, help="Keep inputs and outputs here (default: a temporary folder).")
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="entroad-scaling-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    lines = []
    try:
        if args.only in (None, "predict"):
            lines.append(f"predict_scaling={predict_scaling(args.target_s, workdir):.2f}")
        if args.only in (None, "ingest"):
            lines.append(f"ingest_scaling={ingest_scaling(args.target_s):.2f}")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
