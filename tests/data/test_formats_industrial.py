"""Industrial readers on fixtures that reproduce each real layout exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from entroad.data.anomalyclip_meta import export_meta
from entroad.errors import ConfigError, DatasetError
from tests.data.ingest_helpers import by_source, ingest, mask, rgb, save


def _check_masks(ds):
    for r in ds.records:
        img = Image.open(ds.path(r.image))
        assert img.mode in ("RGB", "L")
        if r.mask:
            m = np.asarray(Image.open(ds.path(r.mask)))
            assert m.shape == (img.height, img.width)
            assert set(np.unique(m)) <= {0, 255}


def test_mvtec_layout(tmp_path):
    src = tmp_path / "mvtec"
    save(rgb(), src / "bottle/train/good/000.png")
    save(rgb(seed=1), src / "bottle/test/good/000.png")
    save(rgb(seed=2), src / "bottle/test/broken_large/000.png")
    save(mask(), src / "bottle/ground_truth/broken_large/000_mask.png")
    # MVTec's grid/screw/zipper classes are grayscale
    save(rgb(seed=3)[..., 0], src / "grid/test/bent/001.png")
    save(mask(), src / "grid/ground_truth/bent/001_mask.png")
    (src / "license.txt").write_text("CC BY-NC-SA 4.0")
    res, ds = ingest(tmp_path, "mvtec", src)
    recs = by_source(ds)
    assert ds.meta.classes == ["bottle", "grid"]
    assert recs["bottle/train/good/000.png"].split == "train"
    assert recs["bottle/test/good/000.png"].label == 0 and recs["bottle/test/good/000.png"].mask is None
    bad = recs["bottle/test/broken_large/000.png"]
    assert (bad.label, bad.anomaly_type, bad.mask) == (1, "broken_large", "masks/bottle/test/broken_large/000.png")
    assert Image.open(ds.path(recs["grid/test/bent/001.png"].image)).mode == "L"
    np.testing.assert_array_equal(np.asarray(Image.open(ds.path(bad.image))), rgb(seed=2))
    _check_masks(ds)
    assert res.audit["counts"]["skipped"] == 0
    # include_train: false keeps only the test split
    _, ds2 = ingest(tmp_path, "mvtec", src, name="test-only", include_train=False)
    assert {r.split for r in ds2.records} == {"test"}


def test_visa_split_csv_and_01_masks(tmp_path):
    src = tmp_path / "visa"
    save(rgb(), src / "candle/Data/Images/Normal/0000.JPG", format="JPEG")
    save(rgb(seed=1), src / "candle/Data/Images/Normal/0001.JPG", format="JPEG")
    save(rgb(seed=2), src / "candle/Data/Images/Anomaly/000.JPG", format="JPEG")
    save(mask(value=1), src / "candle/Data/Masks/Anomaly/000.png")  # VisA masks are 0/1
    save(mask(value=1), src / "candle/Data/Masks/Anomaly/007.png")  # no image: reported
    (src / "candle/image_anno.csv").write_text(
        "image,label,mask\ncandle/Data/Images/Anomaly/000.JPG,chunk of wax missing,candle/Data/Masks/Anomaly/000.png\n")
    (src / "split_csv").mkdir()
    (src / "split_csv/1cls.csv").write_text(
        "object,split,label,image,mask\n"
        "candle,train,normal,candle/Data/Images/Normal/0000.JPG,\n"
        "candle,test,normal,candle/Data/Images/Normal/0001.JPG,\n"
        "candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png\n")
    res, ds = ingest(tmp_path, "visa", src)
    recs = by_source(ds)
    bad = recs["candle/Data/Images/Anomaly/000.JPG"]
    assert bad.label == 1 and bad.anomaly_type == "chunk_of_wax_missing"
    m = np.asarray(Image.open(ds.path(bad.mask)))
    assert m.max() == 255 and (m > 0).sum() == (mask() > 0).sum()
    assert recs["candle/Data/Images/Normal/0000.JPG"].split == "train"
    assert res.audit["skipped_by_reason"] == {"mask without image": 1}
    _check_masks(ds)


def test_btad_ok_ko_bmp_and_unsuffixed_masks(tmp_path):
    src = tmp_path / "btad"
    save(rgb(), src / "01/train/ok/0000.bmp")
    save(rgb(seed=1), src / "01/test/ok/0000.bmp")
    save(rgb(seed=2), src / "01/test/ko/0000.bmp")
    save(mask(), src / "01/ground_truth/ko/0000.png")
    save(rgb(seed=3), src / "03/test/ko/0001.bmp")
    save(mask(), src / "03/ground_truth/ko/0001.bmp")  # class 03 ships BMP masks
    _, ds = ingest(tmp_path, "btad", src)
    recs = by_source(ds)
    assert recs["01/test/ok/0000.bmp"].label == 0
    assert recs["01/test/ko/0000.bmp"].mask is not None and recs["03/test/ko/0001.bmp"].mask is not None
    assert recs["01/test/ko/0000.bmp"].anomaly_type == "ko"


def test_mpdd_and_dtd_synthetic(tmp_path):
    src = tmp_path / "mpdd"
    save(rgb(), src / "tubes/train/good/000.png")
    save(rgb(seed=1), src / "tubes/test/anomalous/000.png")
    save(mask(), src / "tubes/ground_truth/anomalous/000_mask.png")
    _, ds = ingest(tmp_path, "mpdd", src)
    assert by_source(ds)["tubes/test/anomalous/000.png"].mask is not None
    dtd = tmp_path / "dtd"
    save(rgb(), dtd / "Woven_001/train/good/000.png")
    save(rgb(seed=1), dtd / "Woven_001/test/good/000.png")
    save(rgb(seed=2), dtd / "Woven_001/test/bad/000.png")
    save(mask(), dtd / "Woven_001/ground_truth/bad/000_mask.png")
    save(rgb(seed=3), dtd / "Blotchy_099/test/bad/004.png")
    save(mask(), dtd / "Blotchy_099/ground_truth/bad/004.png")  # some copies drop the suffix
    _, ds = ingest(tmp_path, "dtd-synthetic", dtd, name="dtd")
    recs = by_source(ds)
    assert recs["Woven_001/test/bad/000.png"].anomaly_type == "bad"
    assert recs["Blotchy_099/test/bad/004.png"].mask is not None


def test_ksdd2_label_from_gt_mask(tmp_path):
    src = tmp_path / "ksdd2"
    save(rgb(), src / "train/10000.png")
    save(np.zeros((24, 32), np.uint8), src / "train/10000_GT.png")
    save(rgb(seed=1), src / "test/20000.png")
    save(mask(), src / "test/20000_GT.png")
    save(rgb(seed=2), src / "test/20001.png")  # no GT: reported
    res, ds = ingest(tmp_path, "ksdd2", src)
    recs = by_source(ds)
    assert recs["train/10000.png"].label == 0 and recs["train/10000.png"].mask is None
    assert recs["test/20000.png"].label == 1 and recs["test/20000.png"].mask is not None
    assert res.audit["skipped_by_reason"] == {"image without its _GT mask": 1}


def test_generic_folder_single_class_with_suffixed_masks(tmp_path):
    src = tmp_path / "line7"
    save(rgb(), src / "ok/a.png")
    save(rgb(seed=1), src / "ok/b.jpg", format="JPEG")
    save(rgb(seed=2), src / "scratch/c.png")
    save(rgb(seed=3), src / "dent/d.png")
    save(mask(), src / "masks/c_mask.png")
    save(mask(), src / "masks/dent/d.png")
    _, ds = ingest(tmp_path, "folder", src, normal="ok")
    recs = by_source(ds)
    assert ds.meta.classes == ["line7"]
    assert recs["scratch/c.png"].anomaly_type == "scratch" and recs["scratch/c.png"].mask
    assert recs["dent/d.png"].mask and recs["ok/b.jpg"].label == 0


def test_generic_folder_classes_from_parent_and_image_level(tmp_path):
    src = tmp_path / "plant"
    for i, cls in enumerate(("bolt", "nut")):
        save(rgb(seed=10 + i), src / cls / "good/0.png")
        save(rgb(seed=20 + i), src / cls / "bad/1.png")
    _, ds = ingest(tmp_path, "folder", src, anomalous=["bad"])
    assert ds.meta.classes == ["bolt", "nut"]
    assert not ds.has_masks and sum(r.label for r in ds.records) == 2
    with pytest.raises(DatasetError, match="no .ok. folder"):
        ingest(tmp_path, "folder", src, name="other", normal="ok")


def test_unknown_option_is_a_config_error(tmp_path):
    save(rgb(), tmp_path / "src/good/a.png")
    with pytest.raises(ConfigError, match="unknown option"):
        ingest(tmp_path, "folder", tmp_path / "src", colour="blue")
    with pytest.raises(ConfigError, match="unknown dataset format"):
        ingest(tmp_path, "no-such-format", tmp_path / "src")


def test_anomalyclip_meta_roundtrip(tmp_path):
    src = tmp_path / "mvtec"
    save(rgb(), src / "bottle/test/good/000.png")
    save(rgb(seed=1), src / "bottle/test/crack/000.png")
    save(mask(), src / "bottle/ground_truth/crack/000_mask.png")
    _, ds = ingest(tmp_path, "mvtec", src)
    meta_path = export_meta(ds)
    meta = json.loads(meta_path.read_text())
    item = next(r for r in meta["test"]["bottle"] if r["anomaly"] == 1)
    assert item == {"img_path": "images/bottle/test/crack/000.png", "mask_path": "masks/bottle/test/crack/000.png",
                    "cls_name": "bottle", "specie_name": "crack", "anomaly": 1}
    # Re-import the export: the same records come back.
    _, again = ingest(tmp_path, "anomalyclip", ds.root, name="reimported")
    key = lambda r: (r.cls, r.label, r.anomaly_type, r.split)  # noqa: E731
    assert sorted(map(key, again.records)) == sorted(map(key, ds.records))
    assert again.has_masks
