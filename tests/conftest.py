"""Shared test setup: offline, deterministic, small.

Sub-folders (model/, data/, evaluation/, tracking/, flows/) add their own conftest.py.
"""

from __future__ import annotations

import os

# Before any heavy import: no network, no telemetry, headless plotting.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

from entroad.config import Params, params_from_dict  # noqa: E402

TINY_IMAGE_SIZE = 112  # 7x7 patches with the tiny backbone (patch 16): fast but non-trivial


def tiny_params(**overrides) -> Params:
    """Params for the tiny random-init backbone at a small image size (tests only)."""
    base = {
        "backbone": {
            "name": "entroad-tiny",
            "pretrained": None,
            "image_size": TINY_IMAGE_SIZE,
            "random_init_fallback": False,
            "device": "cpu",
            "precision": "fp32",
        },
        "train": {"batch_size": 4, "epochs": 2},
    }
    return params_from_dict(base, overrides)


# Evaluation settings for tiny test data: in-process loading, exact pixel metrics, few examples.
TINY_EVAL = {
    "evaluation.num_workers": 0,
    "evaluation.report_examples": 2,
    "evaluation.min_per_label": 2,
    "evaluation.pixel_metrics": "exact",
}


@pytest.fixture
def tiny() -> Params:
    return tiny_params()
