"""EntroAD inference overhead over the bare CLIP image encoder.

For each configuration, ``EntroAD.forward`` and open_clip's ``encode_image`` run on the same
(random-init) backbone and the same images, *alternately*, so machine noise hits both
alike; the figure is the median of the per-pair time ratios. Also printed: peak memory
(CUDA: allocator peak; CPU: peak of the profiler's allocation trace) and the share of the forward spent in the
structural-entropy step. Goal: ratio <= 1.25.

With a CUDA device, a bf16 run of ViT-L-14-336 at 518 px, batch 32, reports images/s
(goal >= 200 img/s on an H200).

The last line is the headline figure: ``overhead_ratio=<x>`` (ViT-B-16, 224 px, CPU).

    python benchmarks/inference_overhead.py [--reps 7] [--threads 2] [--skip-gpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

import entroad.model as model_mod
from entroad.config import params_from_dict
from entroad.model import EntroAD


def build(name: str, size: int, device: str, precision: str) -> EntroAD:
    params = params_from_dict(
        {"backbone": {"name": name, "pretrained": None, "image_size": size, "device": device, "precision": precision}}
    )
    return EntroAD.build(params).eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def peak_memory(fn, device: torch.device) -> float:
    """MiB of peak tensor memory of one call: the CUDA allocator's peak, or on CPU the
    running sum of the allocations/frees the profiler records (op granularity)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    deltas = []
    for e in prof.events():
        # "[memory]" events are frees outside any op; ops carry their own net allocation
        usage = e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        if usage:
            deltas.append((e.time_range.start, usage))
    current = peak = 0
    for _, d in sorted(deltas):
        current += d
        peak = max(peak, current)
    return peak / 2**20


def entropy_share(model: EntroAD, images: torch.Tensor, reps: int) -> float:
    """Fraction of the forward spent in ``patch_entropy`` (timed around each call)."""
    original, spent = model_mod.patch_entropy, [0.0]

    def wrapper(*a, **k):
        sync(model.device)
        t0 = time.perf_counter()
        out = original(*a, **k)
        sync(model.device)
        spent[0] += time.perf_counter() - t0
        return out

    model_mod.patch_entropy = wrapper
    try:
        shares = []
        for _ in range(reps):
            spent[0] = 0.0
            total = timed(lambda: model.predict(images), model.device)
            shares.append(spent[0] / total)
    finally:
        model_mod.patch_entropy = original
    return statistics.median(shares)


def measure(name: str, size: int, batch: int, reps: int, device: str = "cpu", precision: str = "fp32") -> dict:
    model = build(name, size, device, precision)
    dev = model.device
    images = torch.randn(batch, 3, size, size, device=dev)
    autocast = dev.type == "cuda" and model.compute_dtype != torch.float32

    def encode():
        with torch.no_grad(), torch.autocast("cuda", dtype=model.compute_dtype, enabled=autocast):
            model.clip.encode_image(images)

    def forward():
        model.predict(images)

    for _ in range(2):  # warm-up (kernels, allocator, cached prompt embeddings)
        encode()
        forward()
    ratios, t_fwd = [], []
    for _ in range(reps):
        te = timed(encode, dev)
        tf = timed(forward, dev)
        ratios.append(tf / te)
        t_fwd.append(tf)
    return {
        "config": f"{name} {size}px b{batch} {dev.type} {str(model.compute_dtype).removeprefix('torch.')}",
        "ratio": statistics.median(ratios),
        "fwd_s": statistics.median(t_fwd),
        "img_per_s": batch / statistics.median(t_fwd),
        "mem_fwd": peak_memory(forward, dev),
        "mem_enc": peak_memory(encode, dev),
        "entropy_share": entropy_share(model, images, max(3, reps // 2)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7, help="alternating timing pairs per configuration")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--batch", type=int, default=1, help="CPU batch size")
    ap.add_argument("--skip-gpu", action="store_true", help="skip the CUDA run even if a GPU is present")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print("Random-init backbones (timing only; weights do not change the cost).")
    rows = [
        measure("entroad-tiny", 224, args.batch, args.reps),
        measure("ViT-B-16", 448, args.batch, max(3, args.reps // 2)),
    ]
    if torch.cuda.is_available() and not args.skip_gpu:
        rows.append(measure("ViT-L-14-336", 518, 32, 10, device="cuda", precision="bf16"))
    headline = measure("ViT-B-16", 224, args.batch, args.reps)
    rows.insert(1, headline)
    print(f"{'configuration':38s} {'ratio':>6s} {'fwd s':>8s} {'img/s':>8s} {'peak MiB fwd/enc':>18s} {'entropy':>8s}")
    for r in rows:
        print(
            f"{r['config']:38s} {r['ratio']:6.3f} {r['fwd_s']:8.4f} {r['img_per_s']:8.1f} "
            f"{r['mem_fwd']:8.1f}/{r['mem_enc']:<8.1f} {100 * r['entropy_share']:7.1f}%"
        )
    print(f"overhead_ratio={headline['ratio']:.3f}")


if __name__ == "__main__":
    main()
