"""The procedural industrial generator: deterministic, masks that match what changed."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from entroad.data.manifest import ProcessedDataset
from entroad.data.synthetic import (
    DEFECTS,
    DIFFUSE_DEFECTS,
    FAMILIES,
    LOCALISED_DEFECTS,
    make_sample,
    sample_rng,
    write_mvtec_layout,
    write_processed_dataset,
    write_visa_layout,
)

SIZE = 96


def _auroc(score: np.ndarray, label: np.ndarray) -> float:
    from scipy.stats import rankdata

    r = rankdata(score)
    n1 = int(label.sum())
    n0 = label.size - n1
    return float((r[label].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def test_api_names():
    assert {"stripes", "grid", "dots", "wood", "marble", "fabric", "metal", "leather"} <= set(FAMILIES)
    assert set(LOCALISED_DEFECTS) == {"scratch", "hole", "crack"}
    assert set(DIFFUSE_DEFECTS) == {"stain", "color_drift", "texture_irregularity"}
    assert DEFECTS == LOCALISED_DEFECTS + DIFFUSE_DEFECTS


@pytest.mark.parametrize("family", FAMILIES)
def test_shapes_and_determinism(family):
    for defect in (None, *DEFECTS):
        a, ma = make_sample(family, defect, SIZE, np.random.default_rng(3))
        b, mb = make_sample(family, defect, SIZE, np.random.default_rng(3))
        assert a.shape == (SIZE, SIZE, 3) and a.dtype == np.uint8
        assert ma.shape == (SIZE, SIZE) and ma.dtype == np.uint8
        assert set(np.unique(ma)) <= {0, 255}
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ma, mb)
        assert (ma > 0).any() == (defect is not None)
    c, _ = make_sample(family, None, SIZE, np.random.default_rng(4))
    assert not np.array_equal(a, c), "different seeds must give different images"
    assert a.std() > 5, "a texture, not a flat image"


@pytest.mark.parametrize("defect", DEFECTS)
def test_defects_are_visible_inside_the_mask_only(defect):
    inside, outside, area, dark_auc = [], [], [], []
    for fam in FAMILIES:
        for i in range(2):
            # Same generator state -> same texture; the defect is the only difference.
            clean, _ = make_sample(fam, None, SIZE, sample_rng(1, fam, defect, i))
            img, mask = make_sample(fam, defect, SIZE, sample_rng(1, fam, defect, i))
            m = mask > 0
            diff = np.abs(img.astype(float) - clean.astype(float)).mean(-1)
            inside.append(diff[m].mean())
            far = ~ndimage.binary_dilation(m, iterations=3)
            outside.append((diff[far] > 30).mean())
            area.append(m.mean())
            lum = img.astype(float) @ np.array([0.299, 0.587, 0.114])
            dark_auc.append(_auroc(-lum.ravel(), m.ravel()))
    assert min(inside) > 8, f"{defect}: some defects are invisible ({min(inside):.1f}/255)"
    assert max(outside) < 0.01, f"{defect}: pixels changed outside the mask"
    if defect in LOCALISED_DEFECTS:
        assert max(area) < 0.05
    else:
        assert min(area) > 0.02
    # Darkness alone must not find the defects.
    assert np.mean(dark_auc) < 0.75


def test_bad_arguments():
    with pytest.raises(ValueError):
        make_sample("nope", None, SIZE, np.random.default_rng(0))
    with pytest.raises(ValueError):
        make_sample("wood", "nope", SIZE, np.random.default_rng(0))


def test_write_processed_dataset(tmp_path):
    ds = write_processed_dataset(tmp_path, "synth", ["stripes", "wood"], 2, 3, 64, seed=7)
    assert isinstance(ds, ProcessedDataset)
    assert ds.root == tmp_path / "synth"
    assert ds.meta.classes == ["stripes", "wood"]
    assert ds.meta.counts["normal"] == 4 and ds.meta.counts["anomalous"] == 6
    for r in ds.records:
        img = Image.open(ds.path(r.image))
        assert img.size == (64, 64) and img.mode == "RGB"
        if r.label == 0:
            assert r.mask is None and r.anomaly_type == "good"
        else:
            assert r.anomaly_type in DEFECTS
            m = np.asarray(Image.open(ds.path(r.mask)))
            assert m.shape == (64, 64) and set(np.unique(m)) == {0, 255}
    again = write_processed_dataset(tmp_path / "b", "synth", ["stripes", "wood"], 2, 3, 64, seed=7)
    assert again.meta.content_hash == ds.meta.content_hash


def test_write_mvtec_layout_is_byte_stable(tmp_path):
    n = write_mvtec_layout(tmp_path / "a", ["grid"], 2, 1, 1, 64, seed=3, defects=["scratch", "stain"])
    assert n == 5
    files = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*.png"))
    assert files == [
        "grid/ground_truth/scratch/000_mask.png",
        "grid/ground_truth/stain/000_mask.png",
        "grid/test/good/000.png",
        "grid/test/scratch/000.png",
        "grid/test/stain/000.png",
        "grid/train/good/000.png",
        "grid/train/good/001.png",
    ]
    write_mvtec_layout(tmp_path / "b", ["grid"], 2, 1, 1, 64, seed=3, defects=["scratch", "stain"])
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_write_visa_layout(tmp_path):
    write_visa_layout(tmp_path, ["metal"], 2, 2, 64, seed=1, n_train_normal=1)
    rows = (tmp_path / "split_csv" / "1cls.csv").read_text().splitlines()
    assert rows[0] == "object,split,label,image,mask"
    assert "metal,train,normal,metal/Data/Images/Normal/0000.JPG," in rows
    assert "metal,test,anomaly,metal/Data/Images/Anomaly/000.JPG,metal/Data/Masks/Anomaly/000.png" in rows
    mask = np.asarray(Image.open(tmp_path / "metal/Data/Masks/Anomaly/000.png"))
    assert set(np.unique(mask)) == {0, 1}


def test_dicom_study_is_byte_stable(tmp_path):
    """Two generations of the bundled DICOM study are the same bytes (random UIDs would change
    the ingested ids, hence dvc.lock, in every fresh clone)."""
    from entroad.data.synthetic.dicom_study import write_dicom_study

    def files(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    for run in ("a", "b"):
        write_dicom_study(tmp_path / run, seed=0, size=32, ct_slices=3, mr_slices=2, mf_frames=2)
    a, b = files(tmp_path / "a"), files(tmp_path / "b")
    assert a and a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
