"""The newcomer path through DVC: a stage command's error comes without DVC's wrapper, the
skip summary survives the stage, and `data status` says how to push."""

from __future__ import annotations

from tests.data.ingest_helpers import make_dvc_project
from tests.data.test_newcomer_cli import PARAMS, entroad, my_line


def test_dvc_stage_errors_come_without_the_wrapper_and_status_says_how_to_push(tmp_path):
    proj = make_dvc_project(tmp_path / "proj", PARAMS)
    # the stage command fails (no source folder): its reason, not DVC's "failed to reproduce"
    err = entroad(proj, "ingest", "my-line", ok=False).stderr
    assert "source folder raw/my-line does not exist" in err
    assert "failed to reproduce" not in err and "ERROR:" not in err and "dvc repro" not in err
    my_line(proj / "raw/my-line")
    flat = " ".join(entroad(proj, "ingest", "my-line").stdout.split())
    assert "my-line: kept 3 anomalous image(s) without a mask" in flat  # read back from the stage's audit
    out = entroad(proj, "data", "status").stdout
    assert "no DVC remote yet" in out and "entroad data remote URL" in out
    entroad(proj, "data", "remote", str(tmp_path / "remote"))
    out = " ".join(entroad(proj, "data", "status").stdout.split())
    assert "pushed: no for my-line - run `entroad data push my-line` (= `dvc push`" in out
    entroad(proj, "data", "push", "my-line")
    out = entroad(proj, "data", "status").stdout
    assert "pushed: no" not in out and "yes" in out
