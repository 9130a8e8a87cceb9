"""Bad input: a clear one-line error or a reported exclusion, never a silent number."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from entroad.data.manifest import DatasetMeta, write_manifest
from entroad.data.synthetic import write_processed_dataset
from entroad.errors import DatasetError, InputError
from entroad.evaluation import metrics as M
from entroad.evaluation.engine import evaluate
from tests.evaluation.conftest import eval_params


def _subset(tmp_path, name, keep):
    """A processed dataset holding only the records ``keep(record) -> bool`` selects."""
    src = write_processed_dataset(tmp_path, name, ["wood", "metal"], 3, 4, 48, seed=7)
    records = [r for r in src.records if keep(r)]
    write_manifest(src.root, records, DatasetMeta(name=name, domain="industrial", classes=[], counts={},
                                                  source_format="synthetic"))
    return src.root


def test_almost_all_anomalous_and_all_normal_classes(loaded_model, tmp_path):
    # wood: 1 normal + 4 anomalous (with masks); metal: 3 normal, no anomalies.
    normals = {"wood": 1, "metal": 3}
    anomalies = {"wood": 4, "metal": 0}

    def keep(r):
        i = int(r.image.rsplit("/", 1)[1][:3])
        return i < (anomalies if r.label else normals)[r.cls]

    root = _subset(tmp_path, "mostly-bad", keep)
    res = evaluate(loaded_model, [root], eval_params(), progress=False)
    d = res.dataset("mostly-bad")
    assert d.metrics["image_auroc"] is None  # no class qualifies
    assert d.metrics["pixel_auroc"] is not None  # wood has regions and normal pixels
    wood, metal = (next(c for c in d.classes if c.cls == k) for k in ("wood", "metal"))
    assert "almost only anomalous" in wood.excluded["image"]
    assert "only normal images" in metal.excluded["image"]
    assert "no anomalous" in metal.excluded["pixel"]
    assert metal.metrics["pixel_auroc"] is None and wood.metrics["pixel_auroc"] == d.metrics["pixel_auroc"]
    assert any(n.startswith("Image-level metrics are absent") for n in d.notes)


def test_mask_of_another_aspect_ratio_is_an_error_naming_it(loaded_model, tmp_path):
    root = _subset(tmp_path, "badmask", lambda r: True)
    rec = next(json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()
               if json.loads(line)["mask"])
    Image.fromarray(np.zeros((48, 20), np.uint8)).save(root / rec["mask"])
    # One loader worker: the error crosses a process boundary and must still be one line.
    p = eval_params(**{"evaluation.num_workers": 1})
    with pytest.raises(InputError) as exc:
        evaluate(loaded_model, [root], p, progress=False)
    msg = str(exc.value)
    assert rec["mask"] in msg and "aspect ratio" in msg
    assert "\n" not in msg and "Traceback" not in msg


def test_mask_at_another_resolution_same_aspect_is_fine(loaded_model, tmp_path):
    root = _subset(tmp_path, "smallmask", lambda r: r.cls == "wood")
    for line in (root / "manifest.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["mask"]:
            m = Image.open(root / rec["mask"])
            m.resize((24, 24), Image.Resampling.NEAREST).save(root / rec["mask"])
    res = evaluate(loaded_model, [root], eval_params(), progress=False)
    assert res.dataset("smallmask").metrics["pixel_auroc"] is not None


def test_empty_dataset_is_a_clear_error(loaded_model, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "manifest.jsonl").write_text("")
    (folder / "dataset.json").write_text(json.dumps(
        {"name": "empty", "domain": "industrial", "classes": [], "counts": {}, "source_format": "folder"}))
    with pytest.raises(DatasetError, match="no images"):
        evaluate(loaded_model, [folder], eval_params(), progress=False)


def test_unknown_dataset_name_says_where_it_looked(loaded_model, tmp_path):
    with pytest.raises(DatasetError, match="not configured in params.yaml: nope .and not processed under "):
        evaluate(loaded_model, ["nope"], eval_params(**{"data.root": str(tmp_path)}), progress=False)


def test_record_with_unreadable_image_is_one_line(loaded_model, tmp_path):
    root = _subset(tmp_path, "broken", lambda r: r.cls == "wood")
    first = json.loads((root / "manifest.jsonl").read_text().splitlines()[0])
    (root / first["image"]).write_bytes(b"not a png")
    with pytest.raises(InputError) as exc:
        evaluate(loaded_model, [root], eval_params(**{"evaluation.num_workers": 1}), progress=False)
    assert "cannot read image" in str(exc.value) and "\n" not in str(exc.value)


def test_pixel_metric_keys_are_all_reported_or_all_excluded(loaded_model, tmp_path):
    root = _subset(tmp_path, "complete", lambda r: True)
    d = evaluate(loaded_model, [root], eval_params(), progress=False).dataset("complete")
    for c in d.classes:
        vals = [c.metrics[k] for k in M.PIXEL_KEYS]
        assert all(v is None for v in vals) or all(v is not None and np.isfinite(v) for v in vals)
