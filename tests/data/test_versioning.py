"""Data versions with a real git + DVC project (no mocks): repro, lock hashes, push, PHI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from entroad.config import load_params
from entroad.data import dvc_ops
from entroad.data.fingerprint import INGEST_CODE
from entroad.data.ingest import ensure_samples, ingest_dataset
from entroad.data.synthetic.dicom_study import PATIENT_DIR, PLANTED_PHI, planted_needles
from entroad.data.versioning import (
    data_version,
    dataset_dir,
    dvc_dir_hash,
    recorded_dvc_hash,
)
from tests.data.ingest_helpers import REPO_ROOT, ingest, make_dvc_project, rgb, save

PARAMS = textwrap.dedent("""
    data:
      root: datasets
      remote: {remote}
      datasets:
        tex:
          format: mvtec
          source: datasets/raw/tex
          generate: {{kind: textures-mvtec, families: [grid], n_train_good: 1, n_test_good: 2,
                     n_test_per_defect: 1, size: 48, seed: 1}}
        ctmr:
          format: dicom
          source: datasets/raw/ctmr
          options: {{size: 48}}
          generate: {{kind: dicom-study, size: 32, ct_slices: 4, mr_slices: 3, mf_frames: 2, seed: 0}}
""")


def test_content_version_without_dvc(tmp_path):
    save(rgb(), tmp_path / "raw/a/test/good/0.png")
    res, ds = ingest(tmp_path, "mvtec", tmp_path / "raw")
    assert data_version(ds.root) == res.version == "content:" + ds.meta.content_hash
    assert recorded_dvc_hash(ds.root) is None


def test_dvc_yaml_tracks_the_ingest_code():
    spec = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    deps = spec["ingest"]["do"]["deps"]
    code = sorted(d.removeprefix("entroad/data/") for d in deps if d.startswith("entroad/"))
    assert code == sorted(INGEST_CODE)
    assert spec["ingest"]["foreach"] == spec["fingerprint"]["foreach"] == "${data.datasets}"
    # The repository's own params.yaml configures the bundled samples DVC iterates over.
    names = [d.name for d in load_params(REPO_ROOT / "params.yaml").data.datasets]
    assert names[:3] == ["sample-textures", "sample-surfaces", "sample-ct-mr"]


@pytest.mark.integration
def test_dvc_project_end_to_end(tmp_path, monkeypatch):
    remote = tmp_path / "remote"
    proj = make_dvc_project(tmp_path / "proj", PARAMS.format(remote=remote))
    site = tmp_path / "dvc-site"
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(site))  # so its state DB can be grepped too
    monkeypatch.setenv("ENTROAD_DEID_SALT", "dvc-test-salt")
    monkeypatch.chdir(proj)
    params = load_params(proj / "params.yaml")
    assert sorted(ensure_samples(params)) == ["ctmr", "tex"]

    first = {n: ingest_dataset(params, n, progress=False) for n in ("tex", "ctmr")}
    for name, res in first.items():
        folder = dataset_dir(params, name)
        assert res.version.endswith(".dir") and not res.skipped
        assert res.version == recorded_dvc_hash(folder) == dvc_dir_hash(folder)
    lock = yaml.safe_load((proj / "dvc.lock").read_text())["stages"]
    assert set(lock) == {"fingerprint@tex", "ingest@tex", "fingerprint@ctmr", "ingest@ctmr"}

    again = ingest_dataset(params, "tex", progress=False)
    assert again.skipped and again.version == first["tex"].version
    status = dvc_ops.stage_status(proj)
    assert not any(k.startswith("ingest@") for k in status), status

    # Plain `dvc repro` over the foreach stages: nothing changed -> no ingest runs.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    entroad_bin = str(Path(sys.executable).parent / "entroad")
    outputs: list[str] = []

    def run(*cmd: str) -> str:
        proc = subprocess.run(cmd, cwd=proj, env=env, capture_output=True, text=True)
        outputs.append(proc.stdout + proc.stderr)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    out = run(sys.executable, "-m", "dvc", "repro")
    assert "Running stage 'ingest@" not in out and "fingerprint@tex" in out
    # New raw file in one dataset: `dvc repro` re-ingests exactly that one.
    from PIL import Image

    Image.fromarray(rgb(48, 48, seed=5)).save(proj / "datasets/raw/tex/grid/test/good/099.png")
    out = run(sys.executable, "-m", "dvc", "repro")
    assert "Running stage 'ingest@tex'" in out and "Running stage 'ingest@ctmr'" not in out
    tex_v2 = data_version(dataset_dir(params, "tex"))
    assert tex_v2 != first["tex"].version and tex_v2 == recorded_dvc_hash(dataset_dir(params, "tex"))
    # The CLI: unchanged -> same version, no work; list shows both versions.
    res = json.loads(run(entroad_bin, "ingest", "tex", "ctmr", "--json"))
    assert [r["skipped"] for r in res] == [True, True] and res[0]["version"] == tex_v2
    rows = {r["name"]: r for r in json.loads(run(entroad_bin, "data", "list", "--json"))}
    assert rows["tex"]["version"] == tex_v2 and rows["ctmr"]["version"] == first["ctmr"].version
    assert rows["tex"]["dvc_tracked"] and rows["ctmr"]["images"] == first["ctmr"].counts["images"]
    run(entroad_bin, "-v", "data", "status")
    Path(proj / "datasets/raw/tex/grid/test/good/099.png").unlink()
    assert ingest_dataset(params, "tex", progress=False).version == first["tex"].version

    # Changing one dataset's settings re-ingests that one only.
    text = (proj / "params.yaml").read_text().replace("options: {size: 48}", "options: {size: 40}")
    (proj / "params.yaml").write_text(text)
    params = load_params(proj / "params.yaml")
    assert ingest_dataset(params, "tex", progress=False).skipped
    changed = ingest_dataset(params, "ctmr", progress=False)
    assert not changed.skipped and changed.version != first["ctmr"].version

    # A processed folder edited behind DVC's back no longer claims the DVC version.
    folder = dataset_dir(params, "tex")
    (folder / "manifest.jsonl").write_text((folder / "manifest.jsonl").read_text() + "\n")
    assert data_version(folder).startswith("content:")
    assert ingest_dataset(params, "tex", force=True, progress=False).version == first["tex"].version

    # Push to the configured remote; status reports it.
    targets = [dvc_ops.stage_name(n) for n in ("tex", "ctmr")]
    assert dvc_ops.cloud_status(proj, targets) is None  # no remote configured yet
    assert dvc_ops.ensure_remote(proj, str(remote)) == dvc_ops.DEFAULT_REMOTE_NAME
    assert dvc_ops.cloud_status(proj, targets)  # something to push
    dvc_ops.push(proj, targets, str(remote))
    assert dvc_ops.cloud_status(proj, targets) == {}
    rows = {r["name"]: r for r in json.loads(run(entroad_bin, "data", "status", "--json"))}
    assert rows["tex"]["pushed"] is True and rows["tex"]["stage"] == "up to date"

    # De-identification holds for everything DVC and the pipeline wrote.
    needles = {v.encode() for v in planted_needles()} | {PATIENT_DIR.encode(), b"CT_HEAD_BLEED", b"dvc-test-salt"}
    needles |= {v.encode() for v in PLANTED_PHI.values()}
    for text in outputs:  # what DVC and the CLI printed (logs)
        assert not [s for s in needles if s in text.encode()], text
    places = [proj / ".dvc", proj / "dvc.lock", proj / "datasets" / "processed", proj / "datasets" / ".cache", remote, site]
    files = [p for place in places for p in ([place] if place.is_file() else place.rglob("*")) if p.is_file()]
    assert len(files) > 50
    for p in files:
        data = p.read_bytes()
        for s in needles:
            assert s not in data, f"{s!r} found in {p}"
