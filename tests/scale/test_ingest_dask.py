"""DICOM ingest on Dask: the same bytes and version as a local run; bad files are reported.

Real Dask (a LocalCluster of 2 worker processes) and real DICOM files from the synthetic study.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest

from entroad.cluster import CONNECT_TIMEOUT_S
from entroad.config import DatasetSpec
from entroad.data.ingest import ingest_spec
from entroad.data.synthetic.dicom_study import PATIENT_DIR, write_dicom_study

SIZE = 48


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """The synthetic study plus two bad files inside series folders."""
    root = tmp_path_factory.mktemp("study")
    write_dicom_study(root, seed=3, size=SIZE, ct_slices=12, mr_slices=8, mf_frames=4)
    series = root / PATIENT_DIR / "CT_HEAD_NORMAL"
    (series / "IM9998.dcm").write_bytes(b"\x00" * 128 + b"DICM" + bytes(range(256)) * 4)  # garbage after the preamble
    ds = pydicom.dcmread(sorted(series.glob("*.dcm"))[0])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + ".9"  # not a duplicate
    cut = series / "IM9999.dcm"
    ds.save_as(cut)
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) - 200])  # header intact, pixel data cut short
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _ingest(study: Path, out: Path, **kw):
    # Labelled like a real export; unlabelled slices (the bad copy's series neighbours) stay normal.
    spec = DatasetSpec(name="scans", format="dicom", source=str(study),
                       options={"unlabelled": "normal", "public_salt": None, "salt": "test-salt-not-secret",
                                **kw.pop("options", {})})
    return ingest_spec(spec, out / "processed" / "scans", out, force=True, progress=False, **kw)


def test_dask_ingest_is_byte_identical_to_serial_and_reports_bad_files(tmp_path, study):
    serial = _ingest(study, tmp_path / "serial", options={"workers": 1})
    dask = _ingest(study, tmp_path / "dask", dask="local:2")
    assert serial.counts["images"] == 2 * 12 + 8 + 4
    assert _tree(serial.path) == _tree(dask.path)  # images, masks, manifest, dataset.json, audit
    assert serial.version == dask.version
    meta = json.loads((dask.path / "dataset.json").read_text())
    assert meta["ingest_params"]["format_version"] == 2 and "dask" not in meta["ingest_params"]["options"]
    reasons = dask.audit["skipped_by_reason"]
    # README.txt, the garbage file (whatever its parse gives) and the cut file; nothing crashed.
    assert reasons.get("corrupt or truncated pixel data") == 1 and sum(reasons.values()) == 3, reasons


def test_local_processes_match_serial(tmp_path, study):
    one = _ingest(study, tmp_path / "one", options={"workers": 1})
    two = _ingest(study, tmp_path / "two", options={"workers": 2})
    assert _tree(one.path) == _tree(two.path) and one.version == two.version


def test_cli_unreachable_scheduler_is_a_clear_error_within_seconds(tmp_path, study, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "params.yaml").write_text("data: {root: store}\n")
    monkeypatch.setenv("ENTROAD_DEID_SALT", "test-salt-not-secret")
    bin_ = str(Path(sys.executable).parent / "entroad")
    t0 = time.monotonic()
    proc = subprocess.run([bin_, "ingest", "scans", "--format", "dicom", "--source", str(study), "-o", "unlabelled=normal",
                           "--dask", f"127.0.0.1:{port}"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0 and time.monotonic() - t0 < 5 * CONNECT_TIMEOUT_S
    assert "cannot reach the Dask scheduler" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "store/processed/scans/manifest.jsonl").exists()
