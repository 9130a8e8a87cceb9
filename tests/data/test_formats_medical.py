"""Medical image readers (non-DICOM) on fixtures with the real folder and mask conventions."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tests.data.ingest_helpers import by_source, ingest, mask, rgb, save


def test_brainmri_yes_no_mixed_extensions(tmp_path):
    src = tmp_path / "brain"
    save(rgb()[..., 0], src / "brain_tumor_dataset/yes/Y1.jpg", format="JPEG")
    save(rgb(seed=1), src / "brain_tumor_dataset/yes/Y2.JPG", format="JPEG")
    save(rgb(seed=2)[..., 0], src / "brain_tumor_dataset/no/1 no.jpeg", format="JPEG")
    save(rgb(seed=3), src / "brain_tumor_dataset/no/N5.png")
    res, ds = ingest(tmp_path, "brainmri", src, name="brainmri")
    assert ds.meta.domain == "medical" and not ds.has_masks
    labels = {k: r.label for k, r in by_source(ds).items()}
    assert labels == {"brain_tumor_dataset/yes/Y1.jpg": 1, "brain_tumor_dataset/yes/Y2.JPG": 1,
                      "brain_tumor_dataset/no/1 no.jpeg": 0, "brain_tumor_dataset/no/N5.png": 0}


def test_headct_labels_csv_with_spaced_header(tmp_path):
    src = tmp_path / "headct"
    for i in range(3):
        save(rgb(seed=i)[..., 0], src / f"head_ct/head_ct/{i:03d}.png")
    (src / "labels.csv").write_text("id, hemorrhage\n0,1\n1,0\n2,1\n9,1\n")
    res, ds = ingest(tmp_path, "headct", src, name="headct")
    labels = {k: r.label for k, r in by_source(ds).items()}
    assert labels == {"head_ct/head_ct/000.png": 1, "head_ct/head_ct/001.png": 0, "head_ct/head_ct/002.png": 1}
    assert res.audit["skipped_by_reason"] == {"label for an unknown image": 1}


def test_br35h_pred_folder_is_unlabelled(tmp_path):
    src = tmp_path / "br35h"
    save(rgb(), src / "yes/y0.jpg", format="JPEG")
    save(rgb(seed=1), src / "no/no0.jpg", format="JPEG")
    save(rgb(seed=2), src / "pred/pred0.jpg", format="JPEG")
    res, ds = ingest(tmp_path, "br35h", src, name="br35h")
    assert len(ds.records) == 2
    assert res.audit["skipped_by_reason"] == {"unlabelled": 1}


def test_isic_segmentation_suffix(tmp_path):
    src = tmp_path / "isic"
    save(rgb(), src / "ISBI2016_ISIC_Part1_Test_Data/ISIC_0000003.jpg", format="JPEG")
    save(mask(), src / "ISBI2016_ISIC_Part1_Test_GroundTruth/ISIC_0000003_Segmentation.png")
    save(rgb(seed=1), src / "ISBI2016_ISIC_Part1_Test_Data/ISIC_0000004.jpg", format="JPEG")  # no mask
    res, ds = ingest(tmp_path, "isic", src, name="isic")
    assert [r.source_id for r in ds.records] == ["ISBI2016_ISIC_Part1_Test_Data/ISIC_0000003.jpg"]
    assert ds.records[0].label == 1 and ds.records[0].cls == "skin"
    assert res.audit["skipped_by_reason"] == {"anomalous image without its mask": 1}


def test_cvc_clinicdb_original_tiff_layout(tmp_path):
    src = tmp_path / "clinic"
    save(rgb(), src / "CVC-ClinicDB/Original/1.tif")
    save(mask(), src / "CVC-ClinicDB/Ground Truth/1.tif")
    _, ds = ingest(tmp_path, "cvc-clinicdb", src, name="clinic")
    assert ds.records[0].mask is not None and ds.records[0].cls == "colon"


def test_cvc_colondb_prepared_layout_with_16bit_and_rgba(tmp_path):
    src = tmp_path / "colon"
    img16 = (np.random.default_rng(0).integers(0, 4096, (24, 32))).astype(np.uint16)
    save(img16, src / "images/1.png")  # 16-bit grayscale (12-bit data)
    rgba = np.dstack([rgb(seed=1), np.full((24, 32), 255, np.uint8)])
    save(rgba, src / "images/2.png")  # RGBA
    save(mask(), src / "masks/1.png")
    save(np.dstack([mask()] * 3), src / "masks/2.png")  # RGB mask
    _, ds = ingest(tmp_path, "cvc-colondb", src, name="colon")
    recs = by_source(ds)
    a = np.asarray(Image.open(ds.path(recs["images/1.png"].image)))
    assert a.dtype == np.uint8 and a.ndim == 2
    np.testing.assert_array_equal(a, np.round(img16 * 255.0 / 4095).astype(np.uint8))
    b = Image.open(ds.path(recs["images/2.png"].image))
    assert b.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(b), rgb(seed=1))


def test_kvasir_lossy_jpeg_masks(tmp_path):
    src = tmp_path / "kvasir"
    save(rgb(64, 64), src / "Kvasir-SEG/images/cju0qkwl35piu0993l0dewei2.jpg", format="JPEG")
    save(mask(64, 64, box=(10, 10, 40, 40)), src / "Kvasir-SEG/masks/cju0qkwl35piu0993l0dewei2.jpg",
         format="JPEG", quality=70)
    _, ds = ingest(tmp_path, "kvasir", src, name="kvasir")
    m = np.asarray(Image.open(ds.path(ds.records[0].mask)))
    assert set(np.unique(m)) == {0, 255}
    # JPEG ringing must not leak: the mask is the box, give or take the block edge
    assert abs(int((m > 0).sum()) - 30 * 30) < 60
