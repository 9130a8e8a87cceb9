"""Ingest behaviour: bad input is skipped and reported, unchanged input does no work,
and a failed ingest never loses or half-writes the previous dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from entroad.config import DatasetSpec, params_from_dict
from entroad.data import ingest as ingest_mod
from entroad.data.ingest import AUDIT_FILE, ensure_samples, ingest_dataset
from entroad.data.manifest import ProcessedDataset, Record, check_relpath
from entroad.data.versioning import data_version, dataset_dir
from entroad.errors import IngestError, ManifestError
from tests.data.ingest_helpers import ingest, mask, rgb, save


def _mvtec(src, n_good=2):
    for i in range(n_good):
        save(rgb(seed=i), src / f"cap/test/good/{i:03d}.png")
    save(rgb(seed=50), src / "cap/test/dent/000.png")
    save(mask(), src / "cap/ground_truth/dent/000_mask.png")
    return src


def test_bad_files_are_skipped_and_counted(tmp_path):
    src = _mvtec(tmp_path / "raw")
    (src / "cap/test/good/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # corrupt
    good = (src / "cap/test/good/000.png").read_bytes()
    (src / "cap/test/good/truncated.png").write_bytes(good[: len(good) // 2])
    (src / "cap/test/good/copy.png").write_bytes(good)  # duplicate file
    save(rgb(seed=7), src / "cap/test/dent/000.jpg", format="JPEG")  # same stem, other extension
    save(rgb(seed=8), src / "cap/test/dent/001.png")
    save(mask(h=10, w=10), src / "cap/ground_truth/dent/001_mask.png")  # wrong size
    save(rgb(seed=9), src / "cap/test/dent/002.png")  # anomalous without mask
    save(mask(), src / "cap/ground_truth/dent/099_mask.png")  # mask without image
    res, ds = ingest(tmp_path, "mvtec", src)
    reasons = res.audit["skipped_by_reason"]
    assert reasons == {
        "anomalous image without its mask": 1,
        "corrupt or unreadable image": 2,
        "duplicate file": 1,
        "duplicate name": 1,
        "mask size differs from image": 1,
        "mask without image": 1,
    }
    assert res.audit["counts"]["skipped"] == 7
    assert sorted(r.source_id for r in ds.records) == ["cap/test/dent/000.jpg", "cap/test/good/000.png",
                                                         "cap/test/good/001.png"]
    listed = {s["file"] for s in res.audit["skipped_files"]}
    assert "cap/ground_truth/dent/099_mask.png" in listed
    # keep = image-level record for the anomalous image without a mask
    res2, ds2 = ingest(tmp_path, "mvtec", src, name="keep", missing_masks="keep")
    assert any(r.source_id == "cap/test/dent/002.png" and r.mask is None for r in ds2.records)


def test_empty_and_missing_sources(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match="is empty"):
        ingest(tmp_path, "mvtec", tmp_path / "empty")
    with pytest.raises(IngestError, match="does not exist"):
        ingest(tmp_path, "mvtec", tmp_path / "nope")
    (tmp_path / "junk/cap/test/good").mkdir(parents=True)
    (tmp_path / "junk/cap/test/good/a.png").write_bytes(b"garbage")
    with pytest.raises(IngestError, match="no usable images"):
        ingest(tmp_path, "mvtec", tmp_path / "junk")
    assert not (tmp_path / "processed" / "ds").exists()


def test_unchanged_input_is_skipped_same_version(tmp_path):
    src = _mvtec(tmp_path / "raw")
    first, _ = ingest(tmp_path, "mvtec", src)
    mtime = (first.path / "manifest.jsonl").stat().st_mtime_ns
    again, _ = ingest(tmp_path, "mvtec", src)
    assert again.skipped and again.version == first.version
    assert (first.path / "manifest.jsonl").stat().st_mtime_ns == mtime
    # Same bytes rewritten (new mtimes): re-hashed, still unchanged.
    (src / "cap/test/good/000.png").write_bytes((src / "cap/test/good/000.png").read_bytes())
    assert ingest(tmp_path, "mvtec", src)[0].skipped
    forced, _ = ingest(tmp_path, "mvtec", src, force=True)
    assert not forced.skipped and forced.version == first.version
    # A changed option or file re-ingests.
    assert not ingest(tmp_path, "mvtec", src, include_train=False)[0].skipped
    save(rgb(seed=99), src / "cap/test/good/000.png")
    changed, _ = ingest(tmp_path, "mvtec", src, include_train=False)
    assert not changed.skipped and changed.version != first.version
    assert first.version.startswith("content:")


def test_failed_ingest_keeps_previous_dataset(tmp_path, monkeypatch):
    src = _mvtec(tmp_path / "raw")
    first, _ = ingest(tmp_path, "mvtec", src)
    before = sorted(p.relative_to(first.path) for p in first.path.rglob("*"))
    save(rgb(seed=77), src / "cap/test/good/005.png")

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ingest_mod, "write_manifest", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        ingest(tmp_path, "mvtec", src)
    monkeypatch.undo()
    assert sorted(p.relative_to(first.path) for p in first.path.rglob("*")) == before
    assert ProcessedDataset.load(first.path).meta.content_hash == first.version.removeprefix("content:")
    assert not list(first.path.parent.glob(".ds.tmp-*")), "temp folder left behind"


def test_interrupted_swap_is_recovered(tmp_path):
    src = _mvtec(tmp_path / "raw")
    first, _ = ingest(tmp_path, "mvtec", src)
    old = first.path.with_name(".ds.old-deadbeef")
    first.path.rename(old)  # as if the process died between the two renames
    again, _ = ingest(tmp_path, "mvtec", src)
    assert again.skipped and again.version == first.version and not old.exists()


def test_manifest_paths_cannot_escape(tmp_path):
    for bad in ("../x.png", "/etc/passwd", "a/../../b.png", "C:/x.png"):
        with pytest.raises(ManifestError):
            check_relpath(bad)
    with pytest.raises(ManifestError):
        Record(image="../../secret.png", label=0, cls="x")
    # an imported meta.json that points outside its folder is refused file by file
    src = tmp_path / "prep"
    save(rgb(), src / "a/good.png")
    save(rgb(seed=1), tmp_path / "outside.png")
    (src / "meta.json").write_text(json.dumps({"test": {"a": [
        {"img_path": "a/good.png", "mask_path": "", "cls_name": "a", "specie_name": "good", "anomaly": 0},
        {"img_path": "../outside.png", "mask_path": "", "cls_name": "a", "specie_name": "x", "anomaly": 1},
    ]}}))
    res, ds = ingest(tmp_path, "anomalyclip", src)
    assert [r.source_id for r in ds.records] == ["a/good.png"]
    assert res.audit["skipped_by_reason"] == {"path escapes the dataset folder": 1}
    # A tampered manifest is rejected on load.
    line = {"image": "../../outside.png", "label": 0, "class": "a"}
    (ds.root / "manifest.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(ManifestError, match="escapes"):
        ProcessedDataset.load(ds.root)


def test_audit_is_written_and_deterministic(tmp_path):
    src = _mvtec(tmp_path / "raw")
    save(mask(), src / "cap/ground_truth/dent/042_mask.png")
    a, _ = ingest(tmp_path, "mvtec", src, name="a")
    b, _ = ingest(tmp_path, "mvtec", src, name="b")
    assert (a.path / AUDIT_FILE).read_text().replace('"a"', '"b"') == (b.path / AUDIT_FILE).read_text()
    assert a.version == b.version


def test_ingest_dataset_api_and_samples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = params_from_dict({"data": {"datasets": {
        "tex": {"format": "mvtec", "source": "datasets/raw/tex",
                "generate": {"kind": "textures-mvtec", "families": ["dots"], "n_train_good": 1, "n_test_good": 2,
                             "n_test_per_defect": 1, "size": 64, "seed": 3}},
    }}})
    assert isinstance(params.data.get("tex"), DatasetSpec)
    with pytest.raises(IngestError, match="entroad data samples"):
        ingest_dataset(params, "tex", use_dvc=False, progress=False)
    assert ensure_samples(params) == ["tex"]
    before = {p: p.read_bytes() for p in (tmp_path / "datasets/raw/tex").rglob("*.png")}
    assert ensure_samples(params) == []  # present: nothing to do
    assert ensure_samples(params, force=True) == ["tex"]
    assert {p: p.read_bytes() for p in (tmp_path / "datasets/raw/tex").rglob("*.png")} == before
    res = ingest_dataset(params, "tex", progress=False)  # not a DVC repo: direct
    assert res.path == dataset_dir(params, "tex") == tmp_path / "datasets/processed/tex"
    assert res.version == data_version(res.path) and not res.skipped
    assert res.counts["images"] == 1 + 2 + 6 and res.counts["anomalous"] == 6
    assert ingest_dataset(params, "tex", progress=False).skipped
    assert np.asarray(ProcessedDataset.load(res.path).records).size == 9


def test_bundled_quickstart_samples_ingest_offline(tmp_path, monkeypatch, salt_env):
    """The samples the quickstart trains on (train.dataset) and evaluates on
    (evaluation.targets), exactly as params.yaml configures them, from the generator."""
    from entroad.config import load_params
    from entroad.data.synthetic.dicom_study import planted_needles
    from tests.data.ingest_helpers import REPO_ROOT

    params = load_params(REPO_ROOT / "params.yaml")
    names = [params.train.dataset, *params.evaluation.targets]
    assert names == ["sample-textures", "sample-surfaces", "sample-ct-mr"]
    monkeypatch.chdir(tmp_path)
    assert sorted(ensure_samples(params)) == sorted(names)
    results = {n: ingest_dataset(params, n, use_dvc=False, progress=False) for n in names}
    for name, res in results.items():
        ds = ProcessedDataset.load(res.path)
        assert res.counts["images"] > 20 and res.counts["anomalous"] > 0 and res.counts["normal"] > 0, name
        assert res.counts["with_mask"] > 0, name  # pixel masks for localisation metrics
        assert ds.meta.domain == params.data.get(name).domain
    tex = ProcessedDataset.load(results["sample-textures"].path)
    assert {r.anomaly_type for r in tex.records} >= {"scratch", "hole", "crack", "stain", "color_drift"}
    assert {r.split for r in tex.records} == {"train", "test"}
    ct = ProcessedDataset.load(results["sample-ct-mr"].path)
    assert set(ct.meta.classes) == {"ct", "mr"}
    assert {r.anomaly_type for r in ct.records if r.label} == {"hemorrhage", "tumor"}
    leaks = [p for p in results["sample-ct-mr"].path.rglob("*") if p.is_file()
             and any(s.encode() in p.read_bytes() for s in planted_needles())]
    assert not leaks
    # A second run does no work and reports the same versions.
    again = {n: ingest_dataset(params, n, use_dvc=False, progress=False) for n in names}
    assert all(again[n].skipped and again[n].version == results[n].version for n in names)
