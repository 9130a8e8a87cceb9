"""dvc.lock is committed: `make quickstart` on a fresh clone must leave `git status` clean, so
the ingest code it records as stage dependencies must be the code in the repository."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from entroad.data.versioning import dvc_dir_hash

ROOT = Path(__file__).resolve().parents[2]


def test_dvc_lock_records_the_ingest_code_as_it_is():
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())
    code = {d["path"]: d["md5"] for st in lock["stages"].values() for d in st.get("deps", [])
            if d["path"].startswith("entroad/")}
    assert code, "no code dependencies in dvc.lock"
    for rel, md5 in code.items():
        path = ROOT / rel
        got = dvc_dir_hash(path) if path.is_dir() else hashlib.md5(path.read_bytes()).hexdigest()
        assert got == md5, (f"dvc.lock records another {rel}: run `make quickstart` in a clean clone "
                            "and commit its dvc.lock")
