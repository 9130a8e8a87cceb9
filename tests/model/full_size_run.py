"""One production-size run on CPU, in its own process so its peak RSS is its own.

ViT-L-14-336 at 518 px (G = 37), random init: one inference forward at batch 2 and one
training step. Prints one JSON line with shapes, checks and figures; the slow test in
test_full_size.py asserts on it. Run by hand: ``python -m tests.model.full_size_run``.
"""

from __future__ import annotations

import hashlib
import json
import resource
import time

import torch

from entroad.config import params_from_dict
from entroad.losses import entroad_loss
from entroad.model import EntroAD

SIZE, BATCH = 518, 2


def tensor_hash(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def main() -> dict:
    torch.set_num_threads(2)
    params = params_from_dict(
        {
            "backbone": {
                "name": "ViT-L-14-336",
                "pretrained": None,
                "image_size": SIZE,
                "random_init_fallback": False,
                "device": "cpu",
                "precision": "fp32",
            },
            "train": {"batch_size": BATCH},
        },
        {},
    )
    res: dict = {}
    t = time.perf_counter()
    model = EntroAD.build(params)
    res["build_s"] = time.perf_counter() - t
    backbone_before = tensor_hash(model.clip)
    images = torch.randn(BATCH, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))

    t = time.perf_counter()
    out = model.predict(images)
    res["forward_s"] = time.perf_counter() - t
    res["shapes"] = {
        "score": list(out.score.shape),
        "anomaly_map": list(out.anomaly_map.shape),
        "entropy_map": list(out.entropy_map.shape),
        "routing_map": list(out.routing_map.shape),
        "layer_probs": list(out.layer_probs["fused"].shape),
    }
    res["finite"] = all(
        bool(torch.isfinite(x).all())
        for x in (out.score, out.anomaly_map, out.entropy_map, out.routing_map, out.confidence_map)
    )

    model.train()
    learnable = [p for _, p in model.learnable_parameters()]
    learn_before = [p.detach().clone() for p in learnable]
    opt = torch.optim.Adam(learnable, lr=params.train.lr, betas=params.train.betas)
    masks = torch.zeros(BATCH, SIZE, SIZE)
    masks[1, 200:300, 150:260] = 1.0
    t = time.perf_counter()
    out = model(images)
    loss, parts = entroad_loss(
        out, masks, torch.ones(BATCH, dtype=torch.bool), torch.tensor([0, 1]), params.train, params.model.routing_ratio
    )
    opt.zero_grad()
    loss.backward()
    res["backbone_grads"] = sum(p.grad is not None for p in model.clip.parameters())
    opt.step()
    res["train_step_s"] = time.perf_counter() - t
    res["loss"] = float(loss)
    res["learnable_changed"] = sum(not torch.equal(a, p) for a, p in zip(learn_before, learnable, strict=True))
    res["backbone_unchanged"] = tensor_hash(model.clip) == backbone_before
    res["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return res


if __name__ == "__main__":
    print(json.dumps(main()))
