"""``entroad promote`` / ``compare`` / ``models`` / ``ui`` on a real store (in-process CLI)."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml
from typer.testing import CliRunner

from entroad.cli import app
from tests.tracking.conftest import TARGETS, shifted
from tests.tracking.test_registry import aliases, candidate

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "200"})


def test_help_explains_the_rule_and_references():
    out = subprocess.run([sys.executable, "-m", "entroad.cli", "promote", "--help"], capture_output=True, text=True,
                         env={"COLUMNS": "200", "PATH": ""}, check=True).stdout
    assert "--dry-run" in out and "promotion.margin" in out and "same data versions" in out
    out = invoke("compare", "--help").output
    assert "@champion" in out and "--markdown" in out


def test_promote_dry_run_then_promote_and_compare(store, params, trained, evaluated):
    (store / "params.yaml").write_text(yaml.safe_dump(params.resolved()))
    result, _ = evaluated
    v1 = candidate(params, trained, result)
    v2 = candidate(params, trained, shifted(result, +3.0))

    r = invoke("promote", "--dry-run", "--version", v1)
    assert r.exit_code == 0 and "dry run" in r.output and "first_champion" in r.output
    assert aliases(params) == {}
    r = invoke("promote", "--version", v1)
    assert r.exit_code == 0 and f"v{v1} is now entroad@champion" in r.output
    r = invoke("promote", "--dry-run")  # default candidate: the newest undecided version (v2)
    assert "would be promoted" in r.output.replace("\n", " ") and aliases(params)["champion"] == v1
    r = invoke("promote")
    assert f"v{v2} is now entroad@champion" in r.output and aliases(params) == {"champion": v2, "challenger": v2}

    md = store / "cmp" / "compare.md"
    r = invoke("compare", v1, "@champion", "--markdown", str(md))
    assert r.exit_code == 0 and TARGETS[0] in r.output and "image_auroc" in r.output
    text = md.read_text()
    assert text.startswith("# EntroAD model comparison") and "| dataset | metric | v1 | v2 |" in text

    r = invoke("models")
    assert "first_champion" in r.output and "promoted" in r.output
    r = invoke("ui")
    assert "mlflow ui --backend-store-uri sqlite:///" in r.output and "prefect server start" in r.output


def test_bad_reference_is_one_line_error(store, params):
    (store / "params.yaml").write_text(yaml.safe_dump(params.resolved()))
    proc = subprocess.run([sys.executable, "-m", "entroad.cli", "compare", "v7"], capture_output=True, text=True,
                          cwd=store)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_dead_ends_name_the_next_command(store, params):
    """An empty registry: compare, promote and evaluate --track each say what to run next."""
    (store / "params.yaml").write_text(yaml.safe_dump(params.resolved()))

    def run(*args):
        proc = subprocess.run([sys.executable, "-m", "entroad.cli", *args], capture_output=True, text=True, cwd=store,
                              env={**os.environ, "COLUMNS": "80"})
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        return " ".join(proc.stderr.split())

    err = run("compare", "@champion", "latest")
    assert "no @champion yet" in err and "entroad promote --version N" in err and "--track" in err
    err = run("promote", "--dry-run")
    assert "no versions yet" in err and "entroad evaluate --model runs/<train>/model --data DATASET --track" in err
    (store / "untracked" / "model").mkdir(parents=True)
    (store / "untracked" / "model" / "config.json").write_text("{}")
    (store / "untracked" / "model" / "weights.safetensors").write_bytes(b"")
    err = run("evaluate", "--model", "untracked/model", "--data", TARGETS[0], "--track")
    assert "has no MLflow training run" in err and "entroad train --out" in err
