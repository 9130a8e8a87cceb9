"""Review fixtures: real predictions made by ``entroad predict`` with a tiny checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_EVAL, tiny_params

# A file name that is also markup: the page must show it as text.
HOSTILE_NAME = '"><img src=x onerror=alert(1)>.png'
PARAMS_TEXT = """# site params (a comment the export must keep)
backbone: {{name: entroad-tiny, pretrained: null, image_size: 112, random_init_fallback: false, device: cpu, precision: fp32}}
data:
  root: {root}
  datasets: {{}}
evaluation:
  targets: []   # the promotion gate's datasets
  num_workers: 0
  min_per_label: 2
  report_examples: 1
  pixel_metrics: exact
"""


def review_params(**overrides):
    return tiny_params(**{**TINY_EVAL, "evaluation.batch_size": 4, **overrides})


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    from entroad.checkpoint import save_checkpoint
    from entroad.model import EntroAD

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = EntroAD.build(tiny_params(), device="cpu")
    out = tmp_path_factory.mktemp("ckpt") / "model"
    save_checkpoint(model, out)
    return out


def site_images(folder: Path, n_per_kind: int = 2) -> Path:
    """Synthetic site images (normal and defective), one of them with a hostile name."""
    from entroad.data.synthetic import write_processed_dataset

    ds = write_processed_dataset(folder.parent / "gen", "site", ["stripes", "dots"], n_per_kind, n_per_kind, 48, seed=4)
    for i, rec in enumerate(sorted(ds.records, key=lambda r: r.image)):
        dest = folder / ("line2" if i % 3 == 0 else "") / f"part{i:02d}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ds.root / rec.image, dest)
    shutil.copy(folder / "part01.png", folder / HOSTILE_NAME)
    return folder


@pytest.fixture(scope="session")
def loaded_model(checkpoint):
    """The checkpoint loaded once (loading builds the prompt-ensemble text embeddings: slow)."""
    from entroad.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint, device="cpu")


@pytest.fixture(scope="session")
def predictions_master(loaded_model, tmp_path_factory) -> Path:
    from entroad.predict import predict

    root = tmp_path_factory.mktemp("site")
    images = site_images(root / "images")
    out = root / "predictions"
    predict(loaded_model, images, out, params=review_params(), threshold=0.5, device="cpu", progress=False)
    return out


@pytest.fixture
def predictions(predictions_master, tmp_path) -> Path:
    """A fresh copy per test (each gets its own verdict store)."""
    dest = tmp_path / "predictions"
    shutil.copytree(predictions_master, dest)
    return dest


@pytest.fixture
def site_repo(tmp_path, monkeypatch) -> Path:
    """A working directory with its own params.yaml (tiny model, no datasets yet)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "params.yaml").write_text(PARAMS_TEXT.format(root="datasets"))
    monkeypatch.chdir(repo)
    return repo
