"""Processed-slice layouts: native squares now, 518-px slices before; both load, unknown ones never."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from entroad.data.manifest import ProcessedDataset
from entroad.data.synthetic.dicom_study import write_dicom_image
from entroad.data.torch_dataset import ManifestImageDataset
from entroad.errors import DatasetError
from tests.data.ingest_helpers import ingest

MEAN = STD = (0.5, 0.5, 0.5)


@pytest.fixture
def raw(tmp_path):
    src = tmp_path / "raw"
    pixels = np.zeros((20, 32), np.int32)
    pixels[5:15, 10:22] = 1064  # 40 HU: mid-grey in the brain window
    write_dicom_image(src / "s" / "IM1.dcm", pixels, "CT", seed=1, RescaleSlope=1, RescaleIntercept=-1024)
    return src


def _grey(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def test_native_slices_are_padded_squares_not_resampled(tmp_path, raw, salt_env):
    res, ds = ingest(tmp_path, "dicom", raw, labels=None, unlabelled="normal")
    img = _grey(ds.path(ds.records[0].image))
    assert img.shape == (32, 32)  # 20 x 32 padded to the longer side
    assert (img[:6] == 0).all() and (img[26:] == 0).all()  # black bands above and below
    inner = img[6:26]
    assert inner[5:15, 10:22].min() == inner[5:15, 10:22].max() == 127  # no resampling blur
    assert json.loads((res.path / "dataset.json").read_text())["ingest_params"]["format_version"] == 2


def _as_layout(ds: ProcessedDataset, version: int | None) -> ProcessedDataset:
    meta = json.loads((ds.root / "dataset.json").read_text())
    if version is None:
        meta["ingest_params"].pop("format_version")  # what ingests before the version wrote
    else:
        meta["ingest_params"]["format_version"] = version
    (ds.root / "dataset.json").write_text(json.dumps(meta))
    return ProcessedDataset.load(ds.root)


def test_old_layout_loads_like_the_new_one(tmp_path, raw, salt_env):
    _, new = ingest(tmp_path / "new", "dicom", raw, labels=None, unlabelled="normal")
    # The former layout: resized to a fixed side at ingest, no version recorded.
    _, old = ingest(tmp_path / "old", "dicom", raw, labels=None, unlabelled="normal", size=64)
    old = _as_layout(old, None)
    assert _grey(old.path(old.records[0].image)).shape == (64, 64)
    a = ManifestImageDataset(old, 32, MEAN, STD)[0]["image"]
    b = ManifestImageDataset(new, 32, MEAN, STD)[0]["image"]
    assert a.shape == b.shape == (3, 32, 32)
    # Same picture at the model size (the old file was resampled twice, so not bit-exact).
    assert float((a - b).abs().mean()) < 0.05


def test_unknown_layout_is_refused_with_the_reingest_command(tmp_path, raw, salt_env):
    _, ds = ingest(tmp_path, "dicom", raw, name="scans", labels=None, unlabelled="normal")
    future = _as_layout(ds, 99)
    with pytest.raises(DatasetError, match=r"layout 99.*`entroad ingest scans --force`"):
        ManifestImageDataset(future, 32, MEAN, STD)
