"""A site's folder dataset with anomalous images lacking masks, ingested and evaluated
through the real CLI: the images count for image metrics and are left out of pixel ones."""

from __future__ import annotations

import json

import torch

from entroad.checkpoint import save_checkpoint
from entroad.model import EntroAD
from tests.conftest import tiny_params
from tests.data.test_newcomer_cli import PARAMS, entroad, my_line


def test_maskless_anomalies_are_kept_and_left_out_of_pixel_metrics(tmp_path):
    (tmp_path / "params.yaml").write_text(PARAMS)
    my_line(tmp_path / "raw/my-line")
    entroad(tmp_path, "ingest", "my-line", "--no-dvc")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        save_checkpoint(EntroAD.build(tiny_params(), device="cpu"), tmp_path / "model")
    out = entroad(tmp_path, "evaluate", "--model", str(tmp_path / "model"), "--data", "my-line", "--out", "ev",
                  "--no-report", "--device", "cpu", "--set", "evaluation.num_workers=0",
                  "--set", "evaluation.min_per_label=2", "--set", "evaluation.pixel_metrics=exact").stdout
    assert "my-line" in out
    ds = json.loads((tmp_path / "ev/results.json").read_text())["datasets"][0]
    assert (ds["n_normal"], ds["n_anomalous"]) == (3, 4)  # the 3 mask-less dents count as anomalies
    assert {"class": "my-line", "metrics": "pixel (partial)",
            "reason": "3 anomalous image(s) without a mask left out of pixel metrics"} in ds["exclusions"]
    assert ds["classes"][0]["n_pixel_images"] == 4  # 3 normal + the one scratch with its mask
    assert ds["metrics"]["image_auroc"] is not None and ds["metrics"]["pixel_auroc"] is not None
