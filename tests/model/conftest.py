from __future__ import annotations

import pytest
import torch

from entroad.backbone import load_backbone
from entroad.config import ModelConfig
from entroad.model import EntroAD
from tests.conftest import tiny_params


@pytest.fixture(scope="session")
def tiny_backbone():
    return load_backbone(tiny_params().backbone)


def make_model(backbone, seed: int = 0, perturb: bool = False, **options) -> EntroAD:
    """EntroAD on the shared tiny backbone; ``perturb`` gives the zero-initialised layers
    random weights so that routing and conditioning visibly act on the output."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = EntroAD(backbone, ModelConfig(**options))
        if perturb:
            for mlp in [*model.adapters.values(), *model.conditioners.values()]:
                torch.nn.init.normal_(mlp.fc2.weight, std=0.5)
    return model.eval()


@pytest.fixture(scope="session")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 3, 112, 112, generator=g)
