"""Evaluation throughput vs bare model forward on the same images.

    python benchmarks/eval_throughput.py                       # tiny random-init backbone, CPU-sized
    python benchmarks/eval_throughput.py --images 256 --set backbone.name=ViT-L-14-336 \\
        --set backbone.pretrained=null --set backbone.image_size=518   # production size (GPU)

Both measurements read the same synthetic processed dataset through the same DataLoader
(same batch size, workers, pinned memory), so the ratio isolates what evaluation adds on top
of decoding + forward: per-class pixel statistics (bounded-memory histograms / exact
buffers), image scores, example keeping and the final metric computation. The report
(figures, HTML) is a fixed cost per evaluation and is timed separately.

Last line: ``eval_ratio=<evaluation images/s ÷ bare forward images/s>`` (goal ≥ 0.8), from
wall-clock time. The two are measured alternately ``--repeats`` times in one run and each
side's *best* rate is used: on a shared machine other load only ever slows a repeat down, so
the best of several is the stable estimate (medians are printed too). The CPU-time ratio
(this process + its loader workers) is printed as well; ``--cpu-time`` makes it the reported
ratio.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from entroad.config import params_from_dict  # noqa: E402
from entroad.data.synthetic import FAMILIES, write_processed_dataset  # noqa: E402
from entroad.data.torch_dataset import ManifestImageDataset  # noqa: E402
from entroad.evaluation.engine import run_evaluation  # noqa: E402
from entroad.evaluation.writers import write_results  # noqa: E402
from entroad.model import EntroAD  # noqa: E402

TINY = {
    "backbone": {"name": "entroad-tiny", "pretrained": None, "image_size": 224, "random_init_fallback": False},
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the loader workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Clock:
    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self) -> Clock:
        _sync(self.device)
        self.wall, self.cpu = time.perf_counter(), _cpu_seconds()
        return self

    def __exit__(self, *exc) -> None:
        _sync(self.device)
        self.wall, self.cpu = time.perf_counter() - self.wall, _cpu_seconds() - self.cpu


def bare_forward(model, ds, params) -> tuple[int, Clock]:
    """DataLoader + ``model.predict`` alone (nothing kept)."""
    cfg, info = params.evaluation, model.backbone_info
    tds = ManifestImageDataset(ds, model.image_size, info.mean, info.std, split=cfg.split)
    loader = torch.utils.data.DataLoader(
        tds, batch_size=cfg.batch_size, num_workers=cfg.num_workers, pin_memory=model.device.type == "cuda"
    )
    n = 0
    with Clock(model.device) as clock:
        for batch in loader:
            out = model.predict(batch["image"].to(model.device, non_blocking=True))
            out.score.float().cpu()  # the scores reach the host, as in any real use
            n += batch["image"].shape[0]
    return n, clock


def evaluation(model, ds, params) -> tuple[int, Clock, object]:
    """The whole evaluation pass (scores, pixel metrics, examples, final metrics)."""
    n = len(ds.select(params.evaluation.split))
    with Clock(model.device) as clock:
        result = run_evaluation({"full": model}, [(ds, ds.root)], params, "benchmark", progress=False)
    return n, clock, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # 128 by default: an evaluation has ~0.2 s of fixed cost (loader start-up, final metrics)
    # that 32 tiny-model images (~0.5 s of forward) would overstate; real test sets are larger.
    ap.add_argument("--images", type=int, default=128, help="images in the synthetic dataset (half anomalous)")
    ap.add_argument("--file-size", type=int, default=256, help="side of the synthetic image files (px)")
    ap.add_argument("--repeats", type=int, default=4, help="alternating repeats; the best of each side is used")
    ap.add_argument("--cpu-time", action="store_true", help="report the CPU-time ratio (shared, noisy machines)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="params override key=value")
    args = ap.parse_args()

    params = params_from_dict(
        TINY,
        ["evaluation.num_workers=2", "evaluation.batch_size=8", *args.overrides],
        source="benchmark",
    )
    if not params.backbone.pretrained:
        print("note: random-init backbone (throughput only; scores are meaningless)")
    with tempfile.TemporaryDirectory() as tmp:
        fams = list(FAMILIES[:4])
        per = max(1, args.images // (2 * len(fams)))
        ds = write_processed_dataset(Path(tmp), "bench", fams, per, per, args.file_size, seed=0)
        model = EntroAD.build(params)
        print(f"model: {model.backbone_info.name} @ {model.image_size}px on {model.device} "
              f"({model.compute_dtype}); images: {len(ds.records)}; batch {params.evaluation.batch_size}; "
              f"workers {params.evaluation.num_workers}; pixel metrics {params.evaluation.pixel_metrics}")
        bare_forward(model, ds, params)  # warm-up: kernels, text-embedding cache, page cache
        rates: dict[str, list[float]] = {"bare": [], "eval": [], "bare_cpu": [], "eval_cpu": []}
        result = None
        for _ in range(args.repeats):  # alternate, so slow phases of a shared machine hit both
            n, c = bare_forward(model, ds, params)
            rates["bare"].append(n / c.wall)
            rates["bare_cpu"].append(n / c.cpu)
            n, c, result = evaluation(model, ds, params)
            rates["eval"].append(n / c.wall)
            rates["eval_cpu"].append(n / c.cpu)
        med = {k: statistics.median(v) for k, v in rates.items()}
        best = {k: max(v) for k, v in rates.items()}
        t0 = time.perf_counter()
        write_results(result, Path(tmp) / "out")
        report_s = time.perf_counter() - t0
        d = result.datasets[0]
        bound = max(d.pixel_bound.values()) if d.pixel_bound else 0.0
        for key, name in (("bare", "bare forward"), ("eval", "evaluation  ")):
            runs = ", ".join(f"{x:.2f}" for x in rates[key])
            print(f"{name}: best {best[key]:.2f} img/s wall, median {med[key]:.2f} (runs {runs}); "
                  f"best {best[key + '_cpu']:.2f} img per CPU-second")
        print(f"pixel metrics: {'exact' if d.pixel_exact else 'binned'}, bound {bound:.2g} points; "
              f"report + results files: {report_s:.1f}s (fixed cost per evaluation)")
        wall_ratio, cpu_ratio = best["eval"] / best["bare"], best["eval_cpu"] / best["bare_cpu"]
        print(f"ratio by wall-clock {wall_ratio:.3f} (medians {med['eval'] / med['bare']:.3f}), "
              f"by CPU time {cpu_ratio:.3f}")
        print(f"eval_ratio={cpu_ratio if args.cpu_time else wall_ratio:.3f}")


if __name__ == "__main__":
    main()
