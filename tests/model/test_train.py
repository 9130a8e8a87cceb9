"""Training, checkpoints and exact resume on the tiny backbone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from sklearn.metrics import roc_auc_score

from entroad.checkpoint import load_checkpoint
from entroad.data.synthetic import write_processed_dataset
from entroad.data.torch_dataset import ManifestImageDataset
from entroad.errors import BackboneMismatchError, CheckpointError
from entroad.model import LEARNABLE_PREFIXES, EntroAD
from entroad.train import train
from tests.conftest import tiny_params


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return write_processed_dataset(root, "aux", ["stripes", "grid"], 2, 4, 112, seed=0)


def _weights(model_dir):
    return load_file(str(model_dir / "weights.safetensors"))


def test_checkpoint_holds_learnable_tensors_only_and_reloads(small_set, tmp_path):
    params = tiny_params(**{"train.epochs": 1})
    result = train(params, tmp_path / "run", dataset_dir=small_set.root, progress=False)
    ckpt = result.model_dir
    with safe_open(str(ckpt / "weights.safetensors"), "pt") as f:  # safetensors, not pickle
        keys = set(f.keys())
    assert keys and all(k.startswith(LEARNABLE_PREFIXES) for k in keys)
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["backbone"]["name"] == "entroad-tiny" and cfg["backbone"]["random_init"] is True
    assert cfg["backbone"]["weights_sha256"].startswith("random-init:")
    assert cfg["model"]["entropy"] == "2d" and cfg["trained_on"]["dataset"] == "aux"
    assert cfg["trained_on"]["data_version"] == result.data_version
    model = load_checkpoint(ckpt, device="cpu")
    for k, v in _weights(ckpt).items():
        assert torch.equal(model.state_dict()[k], v)
    x = torch.zeros(1, 3, 112, 112)
    assert torch.isfinite(model.predict(x).score).all()
    # ablation variant from the same checkpoint
    variant = load_checkpoint(ckpt, device="cpu", overrides={"entropy": "none"})
    assert variant.cfg.entropy == "none" and torch.all(variant.predict(x).entropy_map == 0)


def test_mismatched_checkpoints_are_clear_errors(small_set, tmp_path):
    result = train(tiny_params(**{"train.epochs": 1}), tmp_path / "run", dataset_dir=small_set.root, progress=False)
    ckpt = result.model_dir
    cfg_path = ckpt / "config.json"
    original = cfg_path.read_text()

    cfg = json.loads(original)
    cfg["backbone"]["weights_sha256"] = "random-init:" + "0" * 64
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(BackboneMismatchError, match="trained on entroad-tiny"):
        load_checkpoint(ckpt, device="cpu")

    cfg = json.loads(original)
    cfg["model"]["prompt_length"] = 8  # weights no longer fit the configured model
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(ckpt, device="cpu")

    cfg_path.write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        load_checkpoint(ckpt, device="cpu")
    with pytest.raises(CheckpointError, match="not an EntroAD checkpoint"):
        load_checkpoint(tmp_path, device="cpu")


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(small_set, tmp_path):
    params = tiny_params(**{"train.epochs": 3})
    full = train(params, tmp_path / "full", dataset_dir=small_set.root, progress=False)

    def interrupt(epoch, _metrics):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(params, tmp_path / "cut", dataset_dir=small_set.root, progress=False, on_epoch_end=interrupt)
    assert not (tmp_path / "cut" / "model").exists()
    with pytest.raises(CheckpointError, match="--resume"):
        train(params, tmp_path / "cut", dataset_dir=small_set.root, progress=False)
    with pytest.raises(CheckpointError, match="params differ"):
        train(tiny_params(**{"train.epochs": 3, "train.lr": 0.01}), tmp_path / "cut",
              dataset_dir=small_set.root, resume=True, progress=False)
    resumed = train(params, tmp_path / "cut", dataset_dir=small_set.root, resume=True, progress=False)
    assert resumed.resumed_from == 2 and resumed.epochs_run == 1
    a, b = _weights(full.model_dir), _weights(resumed.model_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in full.history] == [h["loss"] for h in resumed.history]
    # resuming a finished run does nothing and still exports the model
    again = train(params, tmp_path / "cut", dataset_dir=small_set.root, resume=True, progress=False)
    assert again.epochs_run == 0


def _pixel_auroc(model, dataset):
    data = ManifestImageDataset(dataset, model.image_size, model.backbone_info.mean, model.backbone_info.std)
    y, s = [], []
    for batch in torch.utils.data.DataLoader(data, batch_size=16):
        out = model.predict(batch["image"])
        y.append(batch["mask"].flatten().numpy())
        s.append(out.anomaly_map.flatten().numpy())
    return roc_auc_score(np.concatenate(y), np.concatenate(s))


def test_training_learns_something_that_transfers_to_unseen_textures(tmp_path, capsys):
    """Train on four texture families, evaluate on four *other* families."""
    aux = write_processed_dataset(tmp_path, "aux", ["stripes", "grid", "dots", "fabric"], 4, 12, 112, seed=0)
    target = write_processed_dataset(tmp_path, "target", ["wood", "marble", "metal", "leather"], 4, 8, 112, seed=1)
    params = tiny_params(**{"train.epochs": 15, "train.batch_size": 8})
    before = _pixel_auroc(EntroAD.build(params), target)
    result = train(params, tmp_path / "run", dataset_dir=aux.root, progress=False)
    after = _pixel_auroc(load_checkpoint(result.model_dir, device="cpu"), target)
    losses = [h["loss"] for h in result.history]
    with capsys.disabled():
        print(f"\n[learning] loss {losses[0]:.3f} -> {losses[-1]:.3f}; unseen-family pixel AUROC "
              f"{before:.3f} -> {after:.3f}")
    assert losses[-1] < 0.9 * losses[0]
    assert after > before + 0.08
