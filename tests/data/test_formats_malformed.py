"""Malformed metadata in a user's files: each reader skips the record with a reason in the
audit (never a traceback); a bad reader option is a ConfigError naming it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from entroad.data.fingerprint import input_fingerprint, plain_key
from entroad.errors import ConfigError, DatasetError
from tests.data.ingest_helpers import by_source, ingest, mask, rgb, save

BAD_BYTES = os.fsdecode(b"bad\xff")  # a name that is not UTF-8 (Linux keeps raw bytes)


def _reasons(res) -> dict[str, str]:
    """{skipped file: reason} from the written audit (also proves it is valid JSON)."""
    audit = json.loads((res.path / "audit.json").read_text(encoding="utf-8"))
    return {s["file"]: s["reason"] for s in audit["skipped_files"]}


def _malformed(reasons: dict[str, str]) -> dict[str, str]:
    """The skips for a malformed value (a path leading outside has its own category)."""
    return {k: v for k, v in reasons.items()
            if v.startswith(("malformed metadata (", "path escapes the dataset folder ("))}


def test_anomalyclip_malformed_records(tmp_path):
    src = tmp_path / "acl"
    save(rgb(), src / "bottle/test/good/000.png")
    save(rgb(seed=1), src / "bottle/test/crack/001.png")
    save(mask(), src / "bottle/ground_truth/crack/001_mask.png")
    save(rgb(seed=2), tmp_path / "outside.png")
    for i in range(2, 8):
        save(rgb(seed=10 + i), src / f"bottle/test/crack/00{i}.png")
    good = {"img_path": "bottle/test/good/000.png", "mask_path": "", "cls_name": "bottle", "anomaly": 0}
    bad = {"img_path": "bottle/test/crack/001.png", "mask_path": "bottle/ground_truth/crack/001_mask.png",
           "cls_name": "bottle", "specie_name": "crack", "anomaly": 1}
    meta = {
        "train": ["not", "an", "object"],
        "test": {
            "bottle": [
                good, bad,
                {**bad, "img_path": "bottle/test/crack/002.png", "anomaly": "maybe"},
                {**bad, "img_path": "bottle/test/crack/003.png", "anomaly": 2},
                {**bad, "img_path": "bottle/test/crack/004.png", "cls_name": "a/b"},
                {**bad, "img_path": "bottle/test/crack/005.png", "mask_path": "../outside.png"},
                {**bad, "img_path": "bottle/test/crack/006.png", "specie_name": ["x"]},
                {**bad, "img_path": "../outside.png"},
                {**bad, "img_path": 7},
                {**bad, "img_path": "bottle/\ud800.png"},  # lone surrogate: no file name can hold it
                "just a string",
            ],
            "screw": {"not": "a list"},
        },
    }
    (src / "meta.json").write_text(json.dumps(meta))
    res, ds = ingest(tmp_path, "anomalyclip", src)
    assert sorted(by_source(ds)) == ["bottle/test/crack/001.png", "bottle/test/good/000.png"]
    bad_ones = _malformed(_reasons(res))
    assert len(bad_ones) == 11, bad_ones
    text = " | ".join(bad_ones.values())
    for why in ("'train' is list", "anomaly 'maybe' is not 0 or 1", "anomaly 2 is not 0 or 1",
                "cls_name 'a/b' contains a path separator", "mask_path '../outside.png' leads outside",
                "img_path '../outside.png' leads outside", "img_path 7 is not a non-empty path", "is not valid UTF-8",
                "record is str", "class 'screw' holds dict", "specie_name ['x'] is not a string"):
        assert why in text, why
    assert res.audit["skipped_by_reason"] == {"malformed metadata": 9, "path escapes the dataset folder": 2}
    # A file that is not a JSON object of splits, or not UTF-8 text, is a DatasetError.
    (src / "meta.json").write_bytes(b'{"test": {"bottle": []}, "x": "\xff"}')
    with pytest.raises(DatasetError, match="not UTF-8"):
        ingest(tmp_path, "anomalyclip", src, name="enc")


def test_headct_malformed_label_rows(tmp_path):
    src = tmp_path / "headct"
    for i in range(6):
        save(rgb(seed=i), src / f"head_ct/{i:03d}.png")
    (src / "labels.csv").write_text(
        "id, hemorrhage\n0, 0\n1, 1\nabc, 1\n2, 2\n3, nan\n4, inf\n\u00b2, 1\n1, 0\n5, 1, extra\n")
    res, ds = ingest(tmp_path, "headct", src)
    assert {r.source_id: r.label for r in ds.records} == {"head_ct/000.png": 0, "head_ct/001.png": 1}
    bad = _malformed(_reasons(res))
    assert set(bad) == {f"labels.csv line {n}" for n in (4, 5, 6, 7, 8, 9, 10)}
    assert "is not a non-negative whole number" in bad["labels.csv line 4"]
    assert "hemorrhage '2' is not 0 or 1" in bad["labels.csv line 5"]
    assert "id 1 is listed twice" in bad["labels.csv line 9"]
    assert "more cells than the header" in bad["labels.csv line 10"]
    # Images left without a usable label row are still reported as such.
    assert _reasons(res)["head_ct/005.png"] == "image without a label"
    with pytest.raises(ConfigError, match="option class_name"):
        ingest(tmp_path, "headct", src, name="c", class_name="../head")
    (src / "labels.csv").write_bytes(b"id, hemorrhage\n0, 0\n\xff\xfe, 1\n")
    with pytest.raises(DatasetError, match="not UTF-8"):
        ingest(tmp_path, "headct", src, name="enc")


def test_visa_malformed_split_csv_rows(tmp_path):
    src = tmp_path / "visa"
    for i in range(8):
        save(rgb(seed=i), src / f"candle/Data/Images/Normal/{i:04d}.JPG", format="JPEG")
    save(rgb(seed=9), tmp_path / "outside.JPG", format="JPEG")
    n = "candle/Data/Images/Normal"
    (src / "split_csv").mkdir()
    (src / "split_csv/1cls.csv").write_text(
        "object,split,label,image,mask\n"
        f"candle,train,normal,{n}/0000.JPG,\n"
        f"candle,val,normal,{n}/0001.JPG,\n"
        f"candle,test,maybe,{n}/0002.JPG,\n"
        f"../candle,test,normal,{n}/0003.JPG,\n"
        f",test,normal,{n}/0004.JPG,\n"
        "candle,test,normal,../outside.JPG,\n"
        f"candle,test,anomaly,{n}/0005.JPG,/etc/passwd\n"
        f"candle,test,normal,{n}/0006.JPG,,surplus\n"
        f"candle,test,normal,{n}/0007.JPG,\n")
    res, ds = ingest(tmp_path, "visa", src)
    assert sorted(by_source(ds)) == [f"{n}/0000.JPG", f"{n}/0007.JPG"]
    bad = _malformed(_reasons(res))
    assert set(bad) == {f"split_csv/1cls.csv line {i}" for i in range(3, 10)}
    assert "split 'val' is not one of train, test" in bad["split_csv/1cls.csv line 3"]
    assert "label 'maybe'" in bad["split_csv/1cls.csv line 4"]
    assert "path separator" in bad["split_csv/1cls.csv line 5"]
    assert "object is empty" in bad["split_csv/1cls.csv line 6"]
    assert "escapes the dataset folder" in bad["split_csv/1cls.csv line 7"]
    assert "mask '/etc/passwd' is absolute" in bad["split_csv/1cls.csv line 8"]
    assert "more cells than the header" in bad["split_csv/1cls.csv line 9"]


def test_mvtec_like_bad_folder_names_and_flag(tmp_path):
    src = tmp_path / "mvtec"
    save(rgb(), src / "bottle/test/good/000.png")
    save(rgb(seed=1), src / "tab\tclass/test/good/000.png")  # control character in a class folder
    save(rgb(seed=2), src / f"bottle/test/good/{BAD_BYTES}.png")  # file name not UTF-8
    save(rgb(seed=3), src / f"bottle/test/{BAD_BYTES}/001.png")  # defect folder (anomaly type) not UTF-8
    save(mask(), src / f"bottle/ground_truth/{BAD_BYTES}/001_mask.png")
    res, ds = ingest(tmp_path, "mvtec", src)
    assert sorted(by_source(ds)) == ["bottle/test/good/000.png"]
    bad = _malformed(_reasons(res))
    assert "control character" in bad["tab\tclass/test/good/000.png"]
    assert "file name is not valid UTF-8" in bad["bottle/test/good/bad\ufffd.png"]
    assert "anomaly type 'bad\ufffd' is not valid UTF-8" in bad["bottle/test/bad\ufffd/001.png"]
    with pytest.raises(ConfigError, match="include_train must be true or false"):
        ingest(tmp_path, "btad", src, name="b", include_train="no")


def test_ksdd2_bad_options_and_names(tmp_path):
    src = tmp_path / "ksdd2"
    save(rgb(), src / "test/20000.png")
    save(mask(), src / "test/20000_GT.png")
    save(rgb(seed=1), src / f"test/{BAD_BYTES}.png")
    save(mask(), src / f"test/{BAD_BYTES}_GT.png")
    res, ds = ingest(tmp_path, "ksdd2", src)
    assert sorted(by_source(ds)) == ["test/20000.png"]
    assert "not valid UTF-8" in _malformed(_reasons(res))["test/bad\ufffd.png"]
    with pytest.raises(ConfigError, match="include_train must be true or false"):
        ingest(tmp_path, "ksdd2", src, name="f", include_train="false")
    with pytest.raises(ConfigError, match="option class_name is empty"):
        ingest(tmp_path, "ksdd2", src, name="c", class_name=" ")


def test_folder_bad_options_and_class_folders(tmp_path):
    src = tmp_path / "plant"
    save(rgb(), src / "bolt/good/0.png")
    save(rgb(seed=1), src / "bolt/bad/1.png")
    save(rgb(seed=2), src / "nut\nx/good/0.png")  # class folder with a newline
    save(rgb(seed=3), src / f"bolt/{BAD_BYTES}/2.png")  # anomalous folder -> anomaly type
    res, ds = ingest(tmp_path, "folder", src)
    assert sorted(by_source(ds)) == ["bolt/bad/1.png", "bolt/good/0.png"]
    bad = _malformed(_reasons(res))
    assert set(bad) == {"nut\nx/good/0.png", "bolt/bad\ufffd/2.png"}
    for opts, match in (({"anomalous": ["../elsewhere"]}, "option anomalous"),
                        ({"normal": ".."}, "option normal"), ({"masks": "a/b"}, "option masks"),
                        ({"split": "val"}, "option split"), ({"anomalous": 3}, "option anomalous"),
                        ({"class_name": "x/y"}, "option class_name")):
        with pytest.raises(ConfigError, match=match):
            ingest(tmp_path, "folder", src, name="o", **opts)


def test_paired_readers_bad_names_and_options(tmp_path):
    isic = tmp_path / "isic"
    save(rgb(), isic / "ISIC_Data/ISIC_1.jpg", format="JPEG")
    save(mask(), isic / "ISIC_GroundTruth/ISIC_1_Segmentation.png")
    save(rgb(seed=1), isic / "ISIC_Data/ISIC\x01.jpg", format="JPEG")
    save(mask(), isic / "ISIC_GroundTruth/ISIC\x01_Segmentation.png")
    res, ds = ingest(tmp_path, "isic", isic)
    assert sorted(by_source(ds)) == ["ISIC_Data/ISIC_1.jpg"]
    assert "control character" in _malformed(_reasons(res))["ISIC_Data/ISIC\x01.jpg"]
    with pytest.raises(ConfigError, match="option class_name"):
        ingest(tmp_path, "isic", isic, name="c", class_name="")
    with pytest.raises(ConfigError, match="option images/masks"):
        ingest(tmp_path, "isic", isic, name="p", images="../ISIC_Data")
    with pytest.raises(DatasetError, match="same folder"):
        ingest(tmp_path, "isic", isic, name="s", images="ISIC_Data", masks="ISIC_Data")
    yes_no = tmp_path / "br35h"
    save(rgb(), yes_no / "yes/y0.jpg", format="JPEG")
    save(rgb(seed=1), yes_no / "no/no0.jpg", format="JPEG")
    save(rgb(seed=2), yes_no / f"no/{BAD_BYTES}.jpg", format="JPEG")
    res, ds = ingest(tmp_path, "br35h", yes_no)
    assert sorted(by_source(ds)) == ["no/no0.jpg", "yes/y0.jpg"]
    assert "not valid UTF-8" in _malformed(_reasons(res))["no/bad\ufffd.jpg"]
    with pytest.raises(ConfigError, match="option class_name"):
        ingest(tmp_path, "br35h", yes_no, name="c", class_name="..")
    polyp = tmp_path / "kvasir"
    save(rgb(), polyp / "images/1.png")
    save(mask(), polyp / "masks/1.png")
    with pytest.raises(ConfigError, match="option class_name"):
        ingest(tmp_path, "kvasir", polyp, name="k", class_name="a\\b")


def test_fingerprint_of_non_utf8_file_name(tmp_path):
    src = tmp_path / "raw"
    save(rgb(), src / f"{BAD_BYTES}.png")
    assert (src / os.fsdecode(b"bad\xff.png")).is_file()
    fp, n = input_fingerprint(src, {"format": "folder"}, tmp_path / "cache.json")
    assert n == 1
    assert plain_key(BAD_BYTES) == plain_key(os.fsdecode(b"bad\xff"))
    assert plain_key(BAD_BYTES) != plain_key("bad\ufffd")  # raw bytes, not a lossy decode
    # Stable on a second run (cache hit) and changed by a rename.
    assert input_fingerprint(src, {"format": "folder"}, tmp_path / "cache.json")[0] == fp
    Path(src / f"{BAD_BYTES}.png").rename(src / "ok.png")
    assert input_fingerprint(src, {"format": "folder"}, tmp_path / "cache.json")[0] != fp


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        ({"missing_masks": "maybe"}, "missing_masks must be 'skip' or 'keep'"),
        ({"classes": "bottle"}, "classes must be a list"),
        ({"classes": ["bottle", ""]}, "classes must be a list"),
    ],
)
def test_common_options_are_typed(given, needle):
    from entroad.data.formats import get_format

    with pytest.raises(ConfigError, match=needle):
        get_format("folder").resolve_options(given)


def test_pseudonymizer_hashes_non_utf8_names():
    from entroad.data.dicom.deid import Pseudonymizer

    name = os.fsdecode(b"pat\xffient/1.dcm")
    key = Pseudonymizer(b"salt").path_key(name)
    assert len(key) == 32 and key != Pseudonymizer(b"salt").path_key("patient/1.dcm")
