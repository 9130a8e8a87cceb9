"""`entroad ingest` / `entroad data ...` through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from entroad.cli import app
from tests.data.ingest_helpers import mask, rgb, save

runner = CliRunner()
COMMANDS = [["ingest"], ["data"], ["data", "list"], ["data", "status"], ["data", "samples"], ["data", "formats"],
            ["data", "export-meta"], ["data", "import-meta"], ["data", "push"], ["data", "pull"], ["data", "remote"],
            ["data", "fingerprint"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c))
def test_help(cmd):
    res = runner.invoke(app, [*cmd, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output and len(res.output) > 200


def test_adhoc_folder_ingest_list_and_export(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("data: {root: store}\n")
    src = tmp_path / "mine"
    save(rgb(), src / "ok/a.png")
    save(rgb(seed=1), src / "scratch/b.png")
    save(mask(), src / "masks/b_mask.png")
    res = runner.invoke(app, ["ingest", "line1", "--format", "folder", "--source", str(src), "--normal", "ok",
                              "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out[0]["counts"]["images"] == 2 and out[0]["version"].startswith("content:")
    assert Path(out[0]["path"]) == tmp_path / "store/processed/line1"
    res = runner.invoke(app, ["data", "list", "--json"])
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["line1"]["images"] == 2 and not rows["line1"]["configured"]
    res = runner.invoke(app, ["data", "export-meta", "line1"])
    assert res.exit_code == 0 and (tmp_path / "store/processed/line1/meta.json").is_file()
    res = runner.invoke(app, ["data", "import-meta", str(tmp_path / "store/processed/line1"), "--name", "again"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "store/processed/again/manifest.jsonl").is_file()
    res = runner.invoke(app, ["data", "formats"])
    for name in ("mvtec", "visa", "btad", "mpdd", "ksdd2", "dtd-synthetic", "brainmri", "headct", "br35h", "isic",
                 "cvc-colondb", "cvc-clinicdb", "kvasir", "folder", "anomalyclip", "dicom"):
        assert name in res.output


def test_user_errors_are_one_line_with_exit_code(tmp_path):
    (tmp_path / "params.yaml").write_text("data: {datasets: {}}\n")
    bin_ = str(Path(sys.executable).parent / "entroad")
    proc = subprocess.run([bin_, "ingest", "nope"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "nope" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([bin_, "ingest", "x", "--format", "mvtec", "--source", "missing"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_adhoc_dicom_ingest_with_nested_options(tmp_path, monkeypatch, salt_env):
    import numpy as np

    from entroad.data.synthetic.dicom_study import PLANTED_PHI, write_dicom_image

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("data: {root: store}\n")
    hu = np.array([[-1000, 0, 40, 80, 1000, 2000]] * 6)
    write_dicom_image(tmp_path / "export/DOE_JANE/ct.dcm", hu + 1024, "CT", RescaleSlope=1, RescaleIntercept=-1024)
    res = runner.invoke(app, ["ingest", "scans", "--format", "dicom", "--source", "export", "-o", "labels=null",
                              "-o", "unlabelled=normal", "-o", "display.CT=bone", "-o", "size=6", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)[0]
    assert out["counts"]["images"] == 1
    meta = json.loads((Path(out["path"]) / "dataset.json").read_text())
    assert meta["ingest_params"]["options"]["display"]["CT"] == "bone"
    assert not [v for v in PLANTED_PHI.values() if v in res.output] and "DOE_JANE" not in res.output
