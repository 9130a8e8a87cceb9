"""Production-size speed and precision: ViT-L-14-336 at 518 px in bf16.

Reports, for one device:

* inference images/s at batch ``--infer-batch`` (default 32; goal >= 200 img/s on one
  H200; AnomalyCLIP publishes 6.65 img/s on an A40), eager and, on CUDA, with
  ``torch.compile`` (the faster one is the figure; both are printed);
* training steps/s and peak memory at batch ``--train-batch`` (default 8);
* fp32-vs-bf16 agreement of the entropy map (correlation, largest difference in standard
  deviations) and of the anomaly map.

The backbone is random-init (same shapes and FLOPs as the real weights). Attention uses
``scaled_dot_product_attention`` (flash / memory-efficient kernels on CUDA) everywhere except
the graph layers, whose probabilities the entropy needs. The last line is JSON.

    python benchmarks/gpu.py                          # CUDA
    python benchmarks/gpu.py --device cpu --images 4  # smoke test (minutes on 2 cores)

On CPU the default precision is fp32 and the agreement check is skipped: CPUs without native
bf16 (no AVX512-BF16/AMX) emulate it 20x+ slower than fp32, so a bf16 smoke test would take an
hour. ``--precision bf16`` forces it; the tiny model's agreement is pinned by
tests/model/test_precision.py.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from entroad.config import params_from_dict
from entroad.losses import entroad_loss
from entroad.model import EntroAD


def build(name: str, size: int, device: str, precision: str) -> EntroAD:
    params = params_from_dict(
        {"backbone": {"name": name, "pretrained": None, "image_size": size, "device": device, "precision": precision}}
    )
    return EntroAD.build(params, device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process peak RSS


def images_per_s(fn, batches: list[torch.Tensor], device: torch.device, warmup: int) -> float:
    for x in batches[:warmup]:
        fn(x)
    sync(device)
    t = time.perf_counter()
    for x in batches:
        fn(x)
    sync(device)
    return sum(len(x) for x in batches) / (time.perf_counter() - t)


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten().double(), b.flatten().double()]))[0, 1])


def agreement(model: EntroAD, x: torch.Tensor, res: dict) -> None:
    """fp32 vs bf16 autocast on the same images: entropy and anomaly maps."""
    mixed = model.predict(x)
    model.compute_dtype = torch.float32
    full = model.predict(x)
    model.compute_dtype = torch.bfloat16
    ez = (mixed.entropy_map - full.entropy_map).abs().max() / full.entropy_map.std()
    res["entropy_corr"], res["entropy_max_diff_sd"] = corr(mixed.entropy_map, full.entropy_map), float(ez)
    res["anomaly_map_corr"] = corr(mixed.anomaly_map, full.anomaly_map)
    print(
        f"fp32 vs bf16: entropy map corr {res['entropy_corr']:.5f} (max diff {float(ez):.3f} sd), "
        f"anomaly map corr {res['anomaly_map_corr']:.5f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", default="ViT-L-14-336")
    ap.add_argument("--size", type=int, default=518)
    ap.add_argument("--images", type=int, default=256, help="images timed for inference")
    ap.add_argument("--infer-batch", type=int, default=32)
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5, help="training steps timed (CUDA; 1 on CPU)")
    ap.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                    help="auto: bf16 on CUDA, fp32 on CPU (see the module docstring)")
    ap.add_argument("--compile", choices=("auto", "on", "off"), default="auto", help="auto: try on CUDA only")
    args = ap.parse_args()

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (use --device cpu --images 4 for the smoke test)")
    if not cuda:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    torch.manual_seed(0)
    precision = args.precision if args.precision != "auto" else ("bf16" if cuda else "fp32")
    model = build(args.model, args.size, args.device, precision)
    res: dict = {
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "model": args.model,
        "size": args.size,
        "dtype": str(model.compute_dtype).removeprefix("torch."),
    }
    print(f"{res['device']}: {args.model} at {args.size} px, {res['dtype']} autocast, random init")

    # ---- inference
    ib = min(args.infer_batch, args.images)
    n_batches = max(1, args.images // ib)
    batches = [torch.randn(ib, 3, args.size, args.size, device=device) for _ in range(n_batches)]
    warmup = 2 if cuda else 0
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    eager = images_per_s(model.predict, batches, device, warmup)
    res["infer_batch"], res["infer_img_s_eager"] = ib, eager
    res["infer_peak_gib"] = peak_gib(device)
    print(f"inference, batch {ib}: {eager:.2f} img/s (eager), peak {res['infer_peak_gib']:.2f} GiB")
    best = eager
    if args.compile == "on" or (args.compile == "auto" and cuda):
        compiled = torch.compile(model.forward)

        @torch.no_grad()
        def run(x: torch.Tensor):
            return compiled(x)

        try:
            model.eval()
            rate = images_per_s(run, batches, device, warmup=2)
            res["infer_img_s_compiled"] = rate
            print(f"inference, batch {ib}: {rate:.2f} img/s (torch.compile)")
            best = max(best, rate)
        except Exception as e:  # a compiler failure is a result to report, not a crash
            res["compile_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            print(f"torch.compile failed, eager kept: {res['compile_error']}")
    res["infer_img_s"] = best

    # ---- fp32 vs bf16 agreement on the same images
    x = batches[0][: min(ib, 4)]
    if model.compute_dtype != torch.bfloat16:
        print("fp32 vs bf16 agreement: skipped (the model runs in fp32; --precision bf16 measures it)")
    else:
        agreement(model, x, res)

    # ---- training
    tb = min(args.train_batch, args.images)
    steps = args.steps if cuda else 1
    params = params_from_dict({})
    model.train()
    opt = torch.optim.Adam([p for _, p in model.learnable_parameters()], lr=params.train.lr, betas=params.train.betas)
    xt = torch.randn(tb, 3, args.size, args.size, device=device)
    masks = (torch.rand(tb, args.size, args.size, device=device) > 0.95).float()
    labels = torch.arange(tb, device=device) % 2
    has_mask = torch.ones(tb, dtype=torch.bool, device=device)

    def step() -> None:
        out = model(xt)
        loss, _ = entroad_loss(out, masks, has_mask, labels, params.train, params.model.routing_ratio)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if cuda:
        step()  # warm-up
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    res["train_batch"], res["train_steps_s"] = tb, steps / (time.perf_counter() - t)
    res["train_peak_gib"] = peak_gib(device)
    print(f"training, batch {tb}: {res['train_steps_s']:.3f} steps/s, peak {res['train_peak_gib']:.2f} GiB")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
