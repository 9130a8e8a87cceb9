"""DVC's remote on the stack's S3 API: ``entroad data push`` from one clone, ``entroad data
pull`` in a second clone gives the same data versions. Credentials and the endpoint come
from the environment only (AWS_* variables); nothing of them lands in git or the DVC config."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from entroad.config import load_params
from entroad.data.ingest import ensure_samples, ingest_dataset
from entroad.data.versioning import data_version
from tests.data.ingest_helpers import make_dvc_project
from tests.stack.conftest import planted_passwords

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
""")
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@e", "-c", "commit.gpgsign=false"]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], outputs: list[str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_push_then_second_clone_pulls_same_versions(stack, tmp_path, monkeypatch):
    env = {**os.environ, **stack.s3().env(), "AWS_ENDPOINT_URL_S3": stack.s3_url, "DVC_NO_ANALYTICS": "1",
           "ENTROAD_DEID_SALT": "stack-dvc-salt"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    entroad = str(Path(sys.executable).parent / "entroad")
    outputs: list[str] = []
    proj = make_dvc_project(tmp_path / "proj", PARAMS.format(remote=stack.dvc_remote_url))
    monkeypatch.chdir(proj)
    params = load_params(proj / "params.yaml")
    ensure_samples(params)
    version = ingest_dataset(params, "tex", progress=False).version
    _run([entroad, "data", "push"], proj, env, outputs)
    keys = [o["Key"] for o in stack.s3().client().list_objects_v2(Bucket=stack.bucket, Prefix="dvc/")["Contents"]]
    assert len(keys) > 5  # the dataset's files, content-addressed
    _run(["git", "add", "-A"], proj, env, outputs)
    _run([*GIT, "commit", "-q", "-m", "ingest tex"], proj, env, outputs)

    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(proj), str(clone)], tmp_path, env, outputs)
    assert not (clone / "datasets" / "processed" / "tex").exists()
    _run([entroad, "data", "pull", "tex"], clone, env, outputs)
    assert data_version(clone / "datasets" / "processed" / "tex") == version

    tracked = subprocess.run(["git", "grep", "-I", "-l", "-e", stack.secret("s3"), "-e", "AWS_"], cwd=proj,
                             capture_output=True, text=True)
    assert tracked.stdout == "", f"credentials in tracked files: {tracked.stdout}"
    config = (proj / ".dvc" / "config").read_text()
    assert stack.dvc_remote_url in config and stack.s3_url not in config
    blob = "\n".join(outputs)
    assert not [pw for pw in planted_passwords(stack) if pw in blob]
