"""DICOM ingest end to end: pixels, labels and masks, compressed files, de-identification."""

from __future__ import annotations

import logging
import os
import re
import stat

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from entroad.data.dicom.deid import SALT_ENV
from entroad.data.dicom.pixels import decode_reason
from entroad.data.synthetic.dicom_study import (
    PATIENT_DIR,
    PLANTED_PHI,
    PRIVATE_VALUE,
    write_dicom_image,
    write_dicom_study,
)
from tests.data.ingest_helpers import ingest

SIZE = 64


def _rgb(path) -> np.ndarray:
    """Decoded RGB pixels of an output slice (grey slices are palette PNGs: i -> (i, i, i))."""
    img = Image.open(path)
    assert img.mode in ("RGB", "P")
    if img.mode == "P":
        assert img.getpalette()[:768] == [v for i in range(256) for v in (i, i, i)]
    return np.asarray(img.convert("RGB"))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    n = write_dicom_study(root, seed=0, size=SIZE, ct_slices=10, mr_slices=8, mf_frames=4)
    return root, n


def _uids(root):
    out = set()
    for p in root.rglob("*.dcm"):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        out |= {str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID),
                str(ds.FrameOfReferenceUID), str(ds.file_meta.MediaStorageSOPInstanceUID)}
    return out


def test_generator_plants_every_identifying_tag(study):
    """Positive control for the leak tests: every keyword of the de-identification inventory
    (and nested / private values) really is in the raw files, so grepping for them means something."""
    from pydicom.datadict import tag_for_keyword

    from entroad.data.dicom.deid import PHI_GROUPS
    from entroad.data.synthetic.dicom_study import NESTED_PHI, PRIVATE_SEQ_VALUE, planted_needles

    root, _ = study
    ds = pydicom.dcmread(root / PATIENT_DIR / "CT_HEAD_BLEED" / "IM0001.dcm")
    missing = [kw for kws in PHI_GROUPS.values() for kw in kws
               if tag_for_keyword(kw) is not None and kw not in ds and kw != "MediaStorageSOPInstanceUID"]
    assert not missing, f"identifying keywords not planted: {missing}"
    raw = b"".join(p.read_bytes() for p in root.rglob("*.dcm"))
    for needle in planted_needles():
        if needle != PATIENT_DIR:
            assert needle.replace(" ", "^").encode() in raw or needle.encode() in raw, needle
    assert all(v.encode() in raw for v in NESTED_PHI.values()) and PRIVATE_SEQ_VALUE.encode() in raw
    assert len(planted_needles()) > 60


def test_study_ingest_counts_labels_and_masks(tmp_path, study, salt_env):
    root, n = study
    res, ds = ingest(tmp_path, "dicom", root, size=96)
    assert res.counts["images"] == n == 2 * 10 + 8 + 4
    assert ds.meta.domain == "medical" and ds.meta.classes == ["ct", "mr"]
    assert res.audit["skipped_by_reason"] == {"not a DICOM file": 1}  # README.txt
    assert res.audit["dicom"]["volumes"] == 4
    assert res.audit["dicom"]["transfer_syntaxes"] == {"Explicit VR Little Endian": 28, "RLE Lossless": 1}
    for r in ds.records:
        a = _rgb(ds.path(r.image))
        assert a.shape == (96, 96, 3)
        assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()  # channel replication
        assert (r.mask is not None) == (r.label == 1)
    bleed = [r for r in ds.records if r.anomaly_type == "hemorrhage"]
    tumour = [r for r in ds.records if r.anomaly_type == "tumor"]
    assert bleed and tumour and len(bleed) + len(tumour) == res.counts["anomalous"]
    # NIfTI mask (stored dcm2niix-style, rows flipped) lands on the bright bleed: the masked
    # pixels are the brightest brain pixels of their slice, everywhere.
    for r in bleed:
        img = _rgb(ds.path(r.image))[..., 0].astype(int)
        m = np.asarray(Image.open(ds.path(r.mask))) > 0
        assert m.any()
        inside = img[m].mean()
        ring = img[(img > 60) & (img < 200) & ~m]
        assert inside > ring.mean() + 60, "mask is not on the lesion (orientation?)"


def test_slices_are_sorted_along_the_normal(tmp_path, study, salt_env):
    root, _ = study
    _, ds = ingest(tmp_path, "dicom", root, size=SIZE, class_name="head")
    ct = sorted((r for r in ds.records if "ct" not in r.image or True), key=lambda r: r.source_id)
    # Head phantom: the skull outline grows then shrinks along z -> brain area is unimodal.
    series = {}
    for r in ct:
        series.setdefault(r.source_id.split("/")[0], []).append(r)
    for recs in series.values():
        if len(recs) < 8:
            continue
        area = [int((_rgb(ds.path(r.image))[..., 0] > 30).sum()) for r in recs]
        peak = int(np.argmax(area))
        assert all(np.diff(area[: peak + 1]) >= -5) and all(np.diff(area[peak:]) <= 5), area


def test_no_phi_in_any_output(tmp_path, study, salt_env, caplog):
    root, _ = study
    caplog.set_level(logging.DEBUG, logger="entroad")
    res, ds = ingest(tmp_path, "dicom", root, size=SIZE)
    from entroad.data.synthetic.dicom_study import planted_needles

    needles = planted_needles() | {PRIVATE_VALUE, PATIENT_DIR, "DOE^JANE", "CT_HEAD_BLEED", "MR_T2_TUMOR",
                                   "IM0001", "ct_head_bleed.nii", "mr_t2_IM"} | _uids(root)
    needles |= {v.replace("^", " ") for v in PLANTED_PHI.values()}
    written = [p for p in tmp_path.rglob("*") if p.is_file() and root not in p.parents]
    assert any(p.name == "manifest.jsonl" for p in written) and any(".cache" in p.parts for p in written)
    for p in written:
        data = p.read_bytes()
        for s in needles:
            assert s.encode() not in data, f"{s!r} leaked into {p.relative_to(tmp_path)}"
    log_text = caplog.text
    for s in needles:
        assert s not in log_text
    for r in ds.records:
        assert re.fullmatch(r"ser-[0-9a-f]{12}/\d{4}", r.source_id)
        assert re.fullmatch(r"images/(ct|mr)/stu-[0-9a-f]{12}/ser-[0-9a-f]{12}/\d{4}\.png", r.image)
    phi = res.audit["dicom"]["phi_tag_groups_dropped"]["files_with_group"]
    assert phi["patient_identity"] == 29 and phi["private_tags"] == 29 and phi["uids"] == 29
    assert "test-salt" not in (ds.root / "dataset.json").read_text()


def test_pseudonyms_stable_and_salted(tmp_path, study, monkeypatch):
    root, _ = study
    monkeypatch.setenv(SALT_ENV, "site-a")
    a = sorted(r.source_id for r in ingest(tmp_path, "dicom", root, name="a", size=SIZE)[1].records)
    b = sorted(r.source_id for r in ingest(tmp_path, "dicom", root, name="b", size=SIZE)[1].records)
    assert a == b
    monkeypatch.setenv(SALT_ENV, "site-b")
    c = sorted(r.source_id for r in ingest(tmp_path, "dicom", root, name="c", size=SIZE)[1].records)
    assert not set(a) & set(c)
    # No salt anywhere: one is generated once, private, and reused.
    monkeypatch.delenv(SALT_ENV)
    d = ingest(tmp_path / "x", "dicom", root, name="d", size=SIZE)[1]
    salt_file = tmp_path / "x" / ".deid_salt"
    assert salt_file.is_file() and stat.S_IMODE(os.stat(salt_file).st_mode) == 0o600
    e = ingest(tmp_path / "x", "dicom", root, name="e", size=SIZE)[1]
    assert sorted(r.source_id for r in d.records) == sorted(r.source_id for r in e.records)
    # the salt change also changes the input fingerprint: a re-ingest happens
    monkeypatch.setenv(SALT_ENV, "site-c")
    assert not ingest(tmp_path / "x", "dicom", root, name="e", size=SIZE)[0].skipped


def test_matches_monai_reader_hu(study):
    """Our sorted HU volume equals MONAI's LoadImage(PydicomReader) on the same series."""
    from monai.transforms import LoadImage

    from entroad.data.dicom.deid import Pseudonymizer
    from entroad.data.dicom.pixels import modality_values
    from entroad.data.dicom.scan import group_volumes, read_header

    root, _ = study
    folder = root / PATIENT_DIR / "CT_HEAD_BLEED"
    headers = [read_header(p, p.relative_to(root).as_posix()) for p in sorted(folder.glob("*.dcm"))]
    (vol,) = group_volumes(headers, Pseudonymizer(b"x"))
    ours = np.stack([modality_values(d, d.pixel_array) for d in (pydicom.dcmread(root / rel) for rel, _ in vol.slices)])
    monai = np.asarray(LoadImage(reader="PydicomReader", image_only=True)(str(folder)))  # (cols, rows, slices)
    monai = np.transpose(monai, (2, 1, 0))
    if not np.allclose(monai, ours):
        monai = monai[::-1]  # MONAI may stack along the opposite direction
    np.testing.assert_allclose(monai, ours)


def test_windows_percentile_and_monochrome1(tmp_path, salt_env):
    src = tmp_path / "raw"
    hu = np.array([[-1000, 0, 40, 80, 1000, 2000]] * 6, np.int32)
    write_dicom_image(src / "ct.dcm", hu + 1024, "CT", RescaleSlope=1, RescaleIntercept=-1024,
                      WindowCenter=500, WindowWidth=1000)
    write_dicom_image(src / "m1.dcm", np.arange(36).reshape(6, 6) * 100, "MR", PhotometricInterpretation="MONOCHROME1")
    opts = dict(labels=None, unlabelled="normal", size=6, resize="stretch")
    _, ds = ingest(tmp_path, "dicom", src, **opts)
    ct = next(r for r in ds.records if r.cls == "ct")
    row = _rgb(ds.path(ct.image))[0, :, 0]
    np.testing.assert_array_equal(row, [0, 0, 127, 255, 255, 255])  # brain window 40/80
    m1 = _rgb(ds.path(next(r for r in ds.records if r.cls == "mr").image))[..., 0]
    assert m1[0, 0] > m1[-1, -1], "MONOCHROME1 must be inverted (low value = bright)"
    _, ds = ingest(tmp_path, "dicom", src, name="bone", display={"CT": "bone", "MR": "file"}, **opts)
    row = _rgb(ds.path(next(r for r in ds.records if r.cls == "ct").image))[0, :, 0]
    assert row[0] == 0 and 0 < row[4] < 255  # 1000 HU inside the bone window
    _, ds = ingest(tmp_path, "dicom", src, name="file", display={"CT": "file"}, **opts)
    row = _rgb(ds.path(next(r for r in ds.records if r.cls == "ct").image))[0, :, 0]
    np.testing.assert_array_equal(row[[1, 4]], [0, 255])  # the file's own 500/1000 window


def test_resize_pad_keeps_aspect(tmp_path, salt_env):
    src = tmp_path / "raw"
    write_dicom_image(src / "wide.dcm", np.full((16, 32), 3000), "CT", RescaleSlope=1, RescaleIntercept=-1024)
    _, ds = ingest(tmp_path, "dicom", src, labels=None, unlabelled="normal", size=64)
    a = _rgb(ds.path(ds.records[0].image))[..., 0]
    assert a.shape == (64, 64)
    assert (a[:16] == 0).all() and (a[-16:] == 0).all() and (a[16:48] == 255).all()


def test_bundled_pydicom_files_and_compressed_syntaxes(tmp_path, salt_env):
    src = tmp_path / "raw"
    src.mkdir()
    names = ["CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "SC_rgb_jpeg_dcmtk.dcm",
             "JPGExtended.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPEG-lossy.dcm", "MR_truncated.dcm",
             "rtplan.dcm"]
    for name in names:
        path = get_testdata_file(name, download=False)  # bundled with the wheel: never the network
        assert path, name
        (src / name).write_bytes(open(path, "rb").read())
        try:  # pydicom's variants of one image share UIDs: give each its own instance
            d = pydicom.dcmread(src / name)
            d.SOPInstanceUID = d.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[name])
            d.save_as(src / name)
        except Exception:
            pass  # broken on purpose (truncated / bad JPEG): keep the bytes as shipped
    # A transfer syntax no installed plugin decodes (High-Throughput JPEG 2000).
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    from pydicom.encaps import encapsulate
    from pydicom.uid import HTJ2KLossless

    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\0" * 64])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = HTJ2KLossless
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["htj2k"])
    ds.save_as(src / "htj2k.dcm")
    (src / "notes.txt").write_text("not dicom")
    res, out = ingest(tmp_path, "dicom", src, labels=None, unlabelled="normal", size=64)
    reasons = res.audit["skipped_by_reason"]
    assert reasons.get("not a DICOM file") == 1
    assert reasons.get("DICOM without image pixels") == 1  # rtplan
    decoded = {s["reason"] for s in res.audit["skipped_files"]}
    htj2k = [r for r in decoded if "High-Throughput" in r]
    assert htj2k and "install a pixel-data plugin" in htj2k[0] and "pylibjpeg" in htj2k[0]
    assert any(r.startswith("corrupt or truncated") for r in decoded)  # JPEG-lossy / MR_truncated
    # The rest decoded: CT, MR, RLE, J2K, JPEG baseline (RGB), JPEG extended, JPEG-LS.
    assert res.counts["images"] >= 7
    assert {"ct", "mr", "ot"} <= {r.cls for r in out.records}
    # The identifying values pydicom's own files carry appear in no output either.
    from entroad.data.dicom.deid import PHI_GROUPS

    needles = set()
    for p in src.glob("*.dcm"):
        try:
            d = pydicom.dcmread(p, stop_before_pixels=True)
        except Exception:
            continue
        for kws in PHI_GROUPS.values():
            for kw in kws:
                v = str(d.get(kw, "") or "")
                if len(v) >= 6 and not v.isdigit() and not (v.isalpha() and v.islower()):  # not a common word
                    needles.add(v.encode())
    assert len(needles) > 10
    for f in (p for p in tmp_path.rglob("*") if p.is_file() and src not in p.parents):
        data = f.read_bytes()
        assert not [n for n in needles if n in data], f.name


def test_decode_reason_names_the_plugin():
    err = RuntimeError(
        "Unable to decompress 'JPEG 2000' pixel data because all plugins are missing dependencies:\n"
        "    gdcm - requires gdcm>=3.0.10\n    pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-openjpeg>=2.0")
    msg = decode_reason(err, "JPEG 2000")
    assert "gdcm>=3.0.10" in msg and "pylibjpeg-openjpeg>=2.0" in msg


def test_labels_csv_rules(tmp_path, study, salt_env):
    root, _ = study
    src = tmp_path / "raw"
    import shutil

    shutil.copytree(root, src)
    text = (src / "labels.csv").read_text().replace("path,label,mask,anomaly_type\n", "path,label,mask,anomaly_type,slice\n")
    (src / "labels.csv").write_text(text)
    with open(src / "labels.csv", "a") as f:
        f.write(f"{PATIENT_DIR}/NOT_THERE/IM0001.dcm,1,,\n")  # unknown file
        f.write("ser-000000000000,1,,,3\n")  # unknown id
        f.write(f"{PATIENT_DIR}/CT_HEAD_NORMAL,maybe,,\n")  # unparseable label
    res, ds = ingest(tmp_path, "dicom", src, size=SIZE)
    assert res.audit["skipped_by_reason"]["labels row names an unknown file or id"] == 2
    assert res.audit["skipped_by_reason"]["unparseable labels row"] == 1
    # Label one slice of the multi-frame file by its pseudonymous series id (as written in
    # source_id by the first ingest), without touching the paths.
    mf = next(r for r in ds.records if r.cls == "mr" and r.source_id.endswith("/0002")
              and "IM" not in r.source_id)
    series = mf.source_id.split("/")[0]
    counts = {}
    for r in ds.records:
        counts.setdefault(r.source_id.split("/")[0], 0)
        counts[r.source_id.split("/")[0]] += 1
    mf_series = [s for s, c in counts.items() if c == 4][0]
    with open(src / "labels.csv", "a") as f:
        f.write(f"{mf_series},1,,artifact,2\n")
    res2, ds2 = ingest(tmp_path, "dicom", src, size=SIZE)
    hit = [r for r in ds2.records if r.source_id == f"{mf_series}/0002"]
    assert hit and hit[0].label == 1 and hit[0].anomaly_type == "artifact"
    assert series  # the record used above exists
    # Unlabelled slices: skipped by default, normal on request, error if asked.
    (src / "labels.csv").write_text("path,label\n" + f"{PATIENT_DIR}/CT_HEAD_NORMAL,0\n")
    res3, ds3 = ingest(tmp_path, "dicom", src, size=SIZE, name="partial")
    assert res3.counts["images"] == 10 and res3.audit["skipped_by_reason"]["no label for this slice in labels.csv"] == 22
    res4, _ = ingest(tmp_path, "dicom", src, size=SIZE, name="partial2", unlabelled="normal")
    assert res4.counts["images"] == 32
    from entroad.errors import DicomError

    with pytest.raises(DicomError, match="no label"):
        ingest(tmp_path, "dicom", src, size=SIZE, name="partial3", unlabelled="error")
    with pytest.raises(DicomError, match="labels file"):
        ingest(tmp_path, "dicom", src, size=SIZE, name="nolabels", labels="missing.csv")


def test_slice_selection_and_burned_in(tmp_path, study, salt_env):
    root, _ = study
    res, ds = ingest(tmp_path, "dicom", root, size=SIZE, slices="middle")
    assert res.counts["images"] == 4  # one per volume
    res, ds = ingest(tmp_path, "dicom", root, size=SIZE, slices="every:4", name="e4")
    assert res.counts["images"] == 3 + 3 + 2 + 1
    src = tmp_path / "bi"
    write_dicom_image(src / "sc.dcm", np.ones((8, 8)), "OT", BurnedInAnnotation="YES")
    write_dicom_image(src / "ok.dcm", np.ones((8, 8)) * 5, "OT")
    res, _ = ingest(tmp_path, "dicom", src, size=SIZE, name="bi", labels=None, unlabelled="normal")
    assert res.counts["images"] == 1 and res.audit["skipped_by_reason"] == {"burned-in annotation": 1}


def test_window_table_equals_direct_formula():
    """The per-value lookup table gives the same bytes as HU conversion + window per pixel."""
    from pydicom.dataset import Dataset

    from entroad.data.dicom.pixels import apply_lut, modality_values, window_lut, window_uint8

    rng = np.random.default_rng(0)
    for dtype, slope, intercept in ((np.uint16, 1, -1024), (np.int16, 0.5, 10.25), (np.uint8, 2, -3)):
        info = np.iinfo(dtype)
        frame = rng.integers(info.min, info.max, (33, 47), endpoint=True).astype(dtype)
        ds = Dataset()
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        for window in ((40.0, 80.0), (-600.0, 1500.0)):
            lut = window_lut(ds, frame.dtype, window)
            np.testing.assert_array_equal(apply_lut(lut, frame), window_uint8(modality_values(ds, frame), *window))
    assert window_lut(ds, np.dtype(np.int32), (40.0, 80.0)) is None


def test_duplicates_corrupt_pixels_and_empty_folders(tmp_path, salt_env):
    from entroad.errors import DicomError, IngestError

    src = tmp_path / "raw"
    a = write_dicom_image(src / "a" / "IM1.dcm", np.full((8, 8), 100), "CT", seed=1)
    (src / "b").mkdir()
    (src / "b" / "copy.dcm").write_bytes(a.read_bytes())  # same SOP instance, another folder
    bad = write_dicom_image(src / "c" / "IM1.dcm", np.full((8, 8), 5), "CT", seed=2)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) - 60])  # pixel data cut short: header fine, decode fails
    (src / "d").mkdir()  # an empty sub-folder is harmless
    res, ds = ingest(tmp_path, "dicom", src, labels=None, unlabelled="normal", size=16)
    assert res.counts["images"] == 1
    reasons = res.audit["skipped_by_reason"]
    assert reasons["duplicate file"] == 1 and reasons["corrupt or truncated pixel data"] == 1
    for s in res.audit["skipped_files"]:
        assert re.fullmatch(r"fil-[0-9a-f]{12}", s["file"]), s  # pseudonymous, never the path
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(IngestError, match="is empty"):
        ingest(tmp_path, "dicom", empty, name="e", labels=None)
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(DicomError, match="no DICOM images"):
        ingest(tmp_path, "dicom", empty, name="e", labels=None)
    assert not (tmp_path / "processed" / "e").exists()


def _outputs(root) -> dict[str, bytes]:
    """Every output file but dataset.json (which records the options, workers included)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "dataset.json"}


def test_workers_do_not_change_outputs(tmp_path, study, salt_env):
    """Threads (default and more) give byte-identical PNGs, masks, manifest and audit to
    ``workers: 1`` (everything in the calling thread), with chunks smaller than a volume."""
    root, n = study
    outs = {}
    for w in (1, 3, 0):
        res, ds = ingest(tmp_path / f"w{w}", "dicom", root, size=SIZE, workers=w, chunk=3)
        assert res.counts["images"] == n
        outs[w] = _outputs(ds.root)
    assert len(outs[1]) > n and outs[1] == outs[3] == outs[0]
    assert not any(".stage" in k for k in outs[1])  # the staging folder is gone


def test_scan_rendering_equals_late_decoding(tmp_path, study, salt_env, monkeypatch):
    """Slices rendered during the scan (one read per file) are the bytes the late path
    (``slices: every:1`` decodes after the scan) writes, windows, masks and multi-frame included."""
    from entroad.data.dicom import ingest as dicom

    root, _ = study
    late: list[str] = []
    decode = dicom.decode_file
    monkeypatch.setattr(dicom, "decode_file", lambda path, ts: late.append(str(path)) or decode(path, ts))
    # workers=1: the counting patch lives in this process (worker processes would not see it).
    _, a = ingest(tmp_path / "all", "dicom", root, size=SIZE, workers=1)
    n_all = len(late)
    _, b = ingest(tmp_path / "every1", "dicom", root, size=SIZE, workers=1, slices="every:1")
    # "all": only the MR files (percentile display needs the volume): 8 slices + 1 multi-frame.
    assert n_all == 9 and len(late) - n_all == 2 * 10 + 8 + 1
    assert _outputs(a.root) == _outputs(b.root)
    late.clear()  # MR shown with its own window: the multi-frame file is rendered in the scan too
    _, a = ingest(tmp_path / "all-f", "dicom", root, size=SIZE, workers=1, display={"MR": "file"})
    assert not late
    _, b = ingest(tmp_path / "every1-f", "dicom", root, size=SIZE, workers=1, display={"MR": "file"}, slices="every:1")
    assert _outputs(a.root) == _outputs(b.root)


def test_monochrome1_inverted_with_a_window(tmp_path, salt_env):
    """MONOCHROME1 under a window preset (the table fast path) is inverted like everywhere."""
    src = tmp_path / "raw"
    hu = np.array([[-1000, 0, 40, 80, 1000, 2000]] * 6, np.int32)
    write_dicom_image(src / "m1.dcm", hu + 1024, "CT", RescaleSlope=1, RescaleIntercept=-1024,
                      PhotometricInterpretation="MONOCHROME1", seed=1)
    write_dicom_image(src / "m2.dcm", hu + 1024, "CT", RescaleSlope=1, RescaleIntercept=-1024, seed=2)
    for slices in ("all", "every:1"):  # rendered in the scan / decoded later
        _, ds = ingest(tmp_path, "dicom", src, name=f"m-{slices[0]}", labels=None, unlabelled="normal",
                       size=6, resize="stretch", slices=slices)
        rows = sorted(_rgb(ds.path(r.image))[0, :, 0].tolist() for r in ds.records)
        assert rows == [[0, 0, 127, 255, 255, 255], [255, 255, 128, 0, 0, 0]]
