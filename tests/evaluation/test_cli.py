"""CLI verbs: help text, a real `entroad evaluate` / `entroad predict`, one-line errors."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from entroad.cli import app, main

runner = CliRunner()
FAST = ["--set", "evaluation.num_workers=0", "--set", "evaluation.report_examples=1", "--set", "evaluation.min_per_label=2"]


@pytest.mark.parametrize("verb", ["evaluate", "predict"])
def test_help(verb):
    res = runner.invoke(app, [verb, "--help"])
    assert res.exit_code == 0
    assert "--model" in res.output and "--out" in res.output


def test_evaluate_command_writes_results_and_operating_point(checkpoint, data_root, tmp_path):
    import shutil

    ckpt = tmp_path / "model"
    shutil.copytree(checkpoint, ckpt)
    out = tmp_path / "eval"
    res = runner.invoke(app, [
        "evaluate", "--model", str(ckpt), "--data", f"{data_root / 'nomask'}", "--out", str(out),
        "--specificity", "0.5", "--no-report", "--save-operating-point", "nomask", "--device", "cpu", *FAST,
    ])
    assert res.exit_code == 0, res.output
    assert "RANDOM-INIT" in res.output and "nomask" in res.output
    js = json.loads((out / "results.json").read_text())
    op = js["datasets"][0]["operating_point"]
    assert op["target"] == "specificity" and op["target_value"] == 0.5
    assert not (out / "report.html").exists()
    saved = json.loads((ckpt / "operating_point.json").read_text())
    assert saved["threshold"] == op["threshold"] and saved["dataset"] == "nomask"

    pred = runner.invoke(app, [
        "predict", "--model", str(ckpt), "--input", str(data_root / "nomask" / "images"), "--out",
        str(tmp_path / "pred"), "--threshold", "model", "--no-overlays", "--device", "cpu", *FAST,
    ])
    assert pred.exit_code == 0, pred.output
    assert "flagged" in pred.output and "operating_point.json" in pred.output

    # A threshold from an evaluation's results.json: its "[dataset: target]" source is text, not markup.
    pred = runner.invoke(app, [
        "predict", "--model", str(ckpt), "--input", str(data_root / "nomask" / "images"), "--out",
        str(tmp_path / "pred2"), "--threshold", str(out / "results.json"), "--no-overlays", "--device", "cpu", *FAST,
    ])
    assert pred.exit_code == 0, pred.output
    assert "[nomask: specificity 0.5]" in pred.output


def test_user_errors_are_one_line_with_nonzero_exit(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["entroad", "evaluate", "--model", str(checkpoint), "--data",
                                      str(tmp_path / "missing"), "--out", str(tmp_path / "o"), *FAST])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "not a processed dataset" in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_cli_modules_import_lazily():
    """`entroad --help` must not pay for torch/matplotlib: the evaluate/predict verbs import
    their heavy modules only when run."""
    import subprocess

    code = (
        "import sys, entroad.commands.evaluate; "
        "print(sorted(m for m in ('torch', 'matplotlib', 'mlflow', 'prefect', 'entroad.evaluation.engine', 'entroad.evaluation.report', 'entroad.predict.run') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_library_never_imports_prefect():
    import subprocess

    code = "import sys, entroad.evaluation.engine, entroad.evaluation.summary, entroad.predict; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
