"""DICOM as a registry format: its pydantic options and the public salt of synthetic samples."""

from __future__ import annotations

import json

import pytest

from entroad.config import DatasetSpec
from entroad.data.dicom.options import resolve_dicom_options
from entroad.data.formats import FORMAT_NAMES, get_format
from entroad.data.ingest import ingest_spec
from entroad.data.manifest import ProcessedDataset
from entroad.data.synthetic.dicom_study import write_dicom_study
from entroad.errors import ConfigError

PUBLIC = "public-test-salt"


def test_dicom_is_a_format_of_the_registry():
    fmt = get_format("dicom")
    assert "dicom" in FORMAT_NAMES and fmt.domain == "medical" and fmt.convert is not None
    # `entroad data formats` lists its own options only (the image converter's do not apply).
    shown = fmt.option_defaults()
    assert shown["display"] == {"CT": "brain", "MR": "percentile", "default": "file"}
    assert "missing_masks" not in shown and "public_salt" not in shown


def test_defaults_keep_the_recorded_shape():
    # dataset.json and the input fingerprint hold this dict: its keys and values must not drift.
    # (size None since processed-slice format 2: native resolution, padded to a square.)
    assert resolve_dicom_options({"display": {"ct": "bone"}}) == {
        "labels": "labels.csv", "unlabelled": "skip",
        "display": {"CT": "bone", "MR": "percentile", "default": "file"},
        "percentiles": [1.0, 99.0], "slices": "all", "size": None, "resize": "pad", "class_name": None,
        "allow_burned_in": False, "workers": 0, "chunk": 16, "salt": None, "salt_file": None,
    }


@pytest.mark.parametrize(("given", "needle"), [
    ({"labelz": "x.csv"}, "labelz: unknown option"),
    ({"unlabelled": "maybe"}, "unlabelled"),
    ({"resize": "crop"}, "resize"),
    ({"size": 2}, "size"),
    ({"slices": "every:zero"}, "slices"),
    ({"display": {"CT": "nowhere"}}, "display"),
    ({"percentiles": [1, 50, 99]}, "percentiles"),
])
def test_bad_options_name_the_key(given, needle):
    with pytest.raises(ConfigError) as err:
        resolve_dicom_options(given)
    assert needle in str(err.value) and "format 'dicom'" in str(err.value)


def _spec(root, generated: bool) -> DatasetSpec:
    return DatasetSpec(name="ctmr", format="dicom", source=str(root), options={"size": 32, "public_salt": PUBLIC},
                       generate={"kind": "dicom-study"} if generated else None)


def test_public_salt_gives_the_same_bytes_whatever_the_site_salt(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    write_dicom_study(raw, seed=0, size=32, ct_slices=3, mr_slices=2, mf_frames=2)
    hashes = []
    for site in ("site-a", "site-b"):  # two clones: different per-checkout secrets
        monkeypatch.setenv("ENTROAD_DEID_SALT", f"secret-{site}")
        root = tmp_path / site
        res = ingest_spec(_spec(raw, True), root / "processed" / "ctmr", root, progress=False)
        meta = json.loads((res.path / "dataset.json").read_text())
        assert PUBLIC not in json.dumps(meta) and "public_salt" not in meta["ingest_params"]["options"]
        hashes.append(ProcessedDataset.load(res.path).meta.content_hash)
    assert hashes[0] == hashes[1]
    # Without the public salt the site secret decides the ids, so the bytes differ.
    monkeypatch.setenv("ENTROAD_DEID_SALT", "secret-site-c")
    plain = DatasetSpec(name="ctmr", format="dicom", source=str(raw), options={"size": 32})
    res = ingest_spec(plain, tmp_path / "c" / "processed" / "ctmr", tmp_path / "c", progress=False)
    assert ProcessedDataset.load(res.path).meta.content_hash != hashes[0]


def test_public_salt_is_refused_for_real_data(tmp_path):
    raw = tmp_path / "raw"
    write_dicom_study(raw, seed=0, size=32, ct_slices=3, mr_slices=2, mf_frames=2)
    with pytest.raises(ConfigError, match="public_salt is only for bundled synthetic samples"):
        ingest_spec(_spec(raw, False), tmp_path / "processed" / "ctmr", tmp_path, progress=False)
