"""Evaluation fixtures: a tiny checkpoint and tiny synthetic datasets (session-scoped)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from entroad.checkpoint import save_checkpoint
from entroad.data.manifest import DatasetMeta, ProcessedDataset, Record, write_manifest
from entroad.data.synthetic import write_processed_dataset
from entroad.model import EntroAD
from tests.conftest import TINY_EVAL, tiny_params

IMAGE_PX = 64  # synthetic files are small; the model resizes them to 112


def eval_params(**overrides):
    """Tiny params for evaluation tests: no loader workers, exact pixel metrics, few examples."""
    base = {**TINY_EVAL, "evaluation.batch_size": 4}
    base.update(overrides)
    return tiny_params(**base)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny random-init checkpoint whose zero-initialised adapters are perturbed, so that
    routing (and so the entropy/routing ablations) visibly changes the output."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = EntroAD.build(tiny_params(), device="cpu")
        for mlp in [*model.adapters.values(), *model.conditioners.values()]:
            torch.nn.init.normal_(mlp.fc2.weight, std=0.5)
    out = tmp_path_factory.mktemp("ckpt") / "model"
    save_checkpoint(model, out, extra={"trained_on": {"dataset": "aux-train", "data_version": "content:x", "domain": "industrial"}})
    return out


@pytest.fixture(scope="session")
def loaded_model(checkpoint):
    """The checkpoint loaded once (loading builds the prompt-ensemble text embeddings: slow)."""
    from entroad.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint, device="cpu")


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("datasets")
    write_processed_dataset(root, "mvtec-ad", ["stripes", "dots"], 3, 3, IMAGE_PX, seed=1)
    write_processed_dataset(root, "polyps", ["fabric"], 0, 4, IMAGE_PX, seed=2, domain="medical")
    # Image-level only: anomalies without masks.
    src = write_processed_dataset(root, "nomask-src", ["grid"], 3, 3, IMAGE_PX, seed=3)
    records = [Record(image=r.image, label=r.label, cls=r.cls, split=r.split, source_id=r.source_id) for r in src.records]
    meta = DatasetMeta(name="nomask", domain="industrial", classes=[], counts={}, source_format="synthetic")
    write_manifest(src.root, records, meta)
    src.root.rename(root / "nomask")
    return root


def dataset(root: Path, name: str) -> ProcessedDataset:
    return ProcessedDataset.load(root / name)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
