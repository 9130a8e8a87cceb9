"""Export: verdicts -> datasets/raw/NAME (folder layout + masks) -> params.yaml -> ingest -> evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from entroad.cli import app
from entroad.data.manifest import ProcessedDataset
from entroad.errors import ConfigError, InputError
from entroad.predict import overlay_name
from entroad.review.export import export_review
from entroad.review.queue import PredictionQueue
from entroad.review.store import REVIEW_DIR, STORE_FILE, VerdictStore
from tests.review.conftest import PARAMS_TEXT

runner = CliRunner()
BOX = {"type": "box", "x0": 0.25, "y0": 0.25, "x1": 0.75, "y1": 0.5}


def _review(predictions, n_anomalous=3, n_normal=3):
    """Verdicts of two reviewers: the top scores anomalous (one with a box), the lowest normal,
    one conflict."""
    q = PredictionQueue(predictions)
    store = VerdictStore(predictions / REVIEW_DIR / STORE_FILE, q.by_id)
    order = q.ordered("score", 0.5)
    anomalous, normal = order[:n_anomalous], order[-n_normal:]
    for i, it in enumerate(anomalous):
        store.add(it.id, "anomalous", "ann", marks=[BOX] if i == 0 else None)
    for it in normal:
        store.add(it.id, "normal", "ann")
    store.add(normal[0].id, "anomalous", "bob")  # disagrees
    store.add(order[n_anomalous].id, "skip", "ann")
    return anomalous, normal


def test_export_writes_the_folder_layout_registers_and_ingests(predictions, site_repo):
    anomalous, normal = _review(predictions)
    res = export_review(predictions, "site-a", progress=False)
    raw = site_repo / "datasets" / "raw" / "site-a"
    assert res.raw_dir.resolve() == raw.resolve()
    assert sorted(p.name for p in (raw / "anomalous").iterdir()) == sorted(overlay_name(it.id) for it in anomalous)
    # the conflicting item is left out by the default rule; the skipped one is no verdict
    assert sorted(p.name for p in (raw / "good").iterdir()) == sorted(overlay_name(it.id) for it in normal[1:])
    assert res.excluded == [normal[0].id] and res.counts == {"anomalous": 3, "normal": 2, "with_mask": 1}
    mask_file = raw / "masks" / "anomalous" / overlay_name(anomalous[0].id)
    mask = np.asarray(Image.open(mask_file))
    h, w = mask.shape
    assert mask[h // 3, w // 2] == 255 and mask[h - 2, w // 2] == 0 and mask[h // 3, 2] == 0
    assert mask.mean() / 255 == pytest.approx(0.5 * 0.25, abs=0.03)
    # params.yaml: the entry is there and the comments survived
    text = (site_repo / "params.yaml").read_text()
    assert "# site params (a comment the export must keep)" in text and "# the promotion gate's datasets" in text
    entry = yaml.safe_load(text)["data"]["datasets"]["site-a"]
    assert entry["format"] == "folder" and entry["source"] == "datasets/raw/site-a" and entry["domain"] == "industrial"
    # ingested: a versioned processed dataset with labels and the mask
    ds = ProcessedDataset.load(res.processed_dir)
    assert res.version and ds.meta.counts["anomalous"] == 3 and ds.meta.counts["images"] == 5
    assert sum(r.mask is not None for r in ds.records) == 1
    again = export_review(predictions, "site-a", progress=False)  # same verdicts: same data version
    assert again.version == res.version and not again.params_entry_added


def test_export_then_evaluate_by_name(predictions, site_repo, checkpoint):
    _review(predictions)
    res = runner.invoke(app, ["review", "export", str(predictions), "--dataset", "site-b", "--conflicts", "anomalous",
                              "--target"])
    assert res.exit_code == 0, res.output
    assert "4 anomalous (1 with a mask), 2 normal" in res.output and "entroad evaluate" in res.output
    assert yaml.safe_load((site_repo / "params.yaml").read_text())["evaluation"]["targets"] == ["site-b"]
    out = site_repo / "eval"
    ev = runner.invoke(app, ["evaluate", "--model", str(checkpoint), "--data", "site-b", "--out", str(out),
                             "--no-report", "--device", "cpu"])
    assert ev.exit_code == 0, ev.output
    results = json.loads((out / "results.json").read_text())
    assert [d["name"] for d in results["datasets"]] == ["site-b"]


def test_export_refuses_what_it_should_not_touch(predictions, site_repo):
    with pytest.raises(InputError, match="no verdicts yet"):
        export_review(predictions, "site-c", progress=False)
    _review(predictions)
    foreign = site_repo / "datasets" / "raw" / "someone-elses"
    foreign.mkdir(parents=True)
    with pytest.raises(InputError, match="was not written by `entroad review export`"):
        export_review(predictions, "someone-elses", progress=False)
    (site_repo / "params.yaml").write_text(PARAMS_TEXT.format(root="datasets").replace(
        "datasets: {}", "datasets:\n    taken: {format: mvtec, source: elsewhere}"))
    with pytest.raises(ConfigError, match="already exists with another format/source"):
        export_review(predictions, "taken", progress=False, ingest=False)
    with pytest.raises(ConfigError):
        export_review(predictions, "Bad Name!", progress=False)


@pytest.mark.integration
def test_export_gets_a_dvc_version(predictions, tmp_path, monkeypatch):
    from tests.data.ingest_helpers import make_dvc_project

    repo = make_dvc_project(tmp_path / "proj", PARAMS_TEXT.format(root="datasets"))
    monkeypatch.chdir(repo)
    _review(predictions)
    res = export_review(predictions, "site-d", use_dvc=True, progress=False)
    assert res.version.endswith(".dir")  # the DVC hash of datasets/processed/site-d
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert "ingest@site-d" in lock["stages"]
