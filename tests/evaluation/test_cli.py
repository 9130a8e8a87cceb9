"""CLI verbs: help text, a real `entroad evaluate` / `entroad predict`, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
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


def entroad(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "entroad.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_evaluate_command_writes_results_and_operating_point(checkpoint, data_root, tmp_path):
    import shutil

    ckpt = tmp_path / "model"
    shutil.copytree(checkpoint, ckpt)
    out = tmp_path / "eval"
    res = entroad(
        "evaluate", "--model", str(ckpt), "--data", f"{data_root / 'nomask'}", "--out", str(out),
        "--specificity", "0.5", "--no-report", "--save-operating-point", "nomask", "--device", "cpu", *FAST,
    )
    assert res.returncode == 0, res.stderr
    assert (res.stdout + res.stderr).count("RANDOM-INIT") == 1 and "nomask" in res.stdout
    js = json.loads((out / "results.json").read_text())
    op = js["datasets"][0]["operating_point"]
    assert op["target"] == "specificity" and op["target_value"] == 0.5
    assert not (out / "report.html").exists()
    saved = json.loads((ckpt / "operating_point.json").read_text())
    assert saved["threshold"] == op["threshold"] and saved["dataset"] == "nomask"
    # the operating point in plain words, with the counts it rests on
    pos, neg = op["tp"] + op["fn"], op["tn"] + op["fp"]
    said = " ".join(res.stdout.split())
    assert f"threshold {op['threshold']:.6g}" in said
    assert f"{op['tp']} of {pos} anomalous flagged" in said and f"{op['tn']} of {neg} normal passed" in said
    assert ("WARNING: low sensitivity" in said) == (op["tp"] / pos < 0.5)

    pred = entroad(
        "predict", "--model", str(ckpt), "--input", str(data_root / "nomask" / "images"), "--out",
        str(tmp_path / "pred"), "--threshold", "model", "--no-overlays", "--device", "cpu", *FAST,
    )
    assert pred.returncode == 0, pred.stderr
    said = " ".join(pred.stdout.split())
    assert "flagged" in said and "operating_point.json" in said
    assert f"{op['tp']} of {pos} anomalous flagged" in said and f"{op['tn']} of {neg} normal passed" in said

    # A threshold from an evaluation's results.json: its "[dataset: target]" source is text, not markup.
    pred = runner.invoke(app, [
        "predict", "--model", str(ckpt), "--input", str(data_root / "nomask" / "images"), "--out",
        str(tmp_path / "pred2"), "--threshold", str(out / "results.json"), "--no-overlays", "--device", "cpu", *FAST,
    ])
    assert pred.exit_code == 0, pred.output
    assert "[nomask: specificity 0.5]" in pred.output


def test_operating_point_warns_when_a_rate_is_low():
    from entroad.predict.operating_point import describe

    lines = describe({"threshold": 0.62, "target": "specificity", "target_value": 0.95, "tp": 1, "fn": 11, "tn": 19, "fp": 1})
    assert "sensitivity 8%: 1 of 12 anomalous flagged" in lines[1]
    assert "specificity 95%: 19 of 20 normal passed" in lines[2]
    assert lines[3] == "WARNING: low sensitivity: 11 of 12 anomalous images would NOT be flagged" and len(lines) == 4


def test_invalid_combinations_fail_before_any_work(tmp_path):
    # an MLflow URI cannot carry an operating point: refused before params, store or model
    res = entroad("evaluate", "--model", "models:/entroad@champion", "--data", "my-line",
                  "--save-operating-point", "my-line", "--out", str(tmp_path / "ev"), cwd=tmp_path)
    assert res.returncode == 2 and "--save-operating-point" in res.stderr
    assert "--threshold OUT/results.json --threshold-dataset my-line" in " ".join(res.stderr.split())
    assert not (tmp_path / "ev").exists() and not (tmp_path / "mlflow").exists()
    res = entroad("evaluate", "--model", str(tmp_path), "--data", "a,b", "--save-operating-point", "c", cwd=tmp_path)
    assert res.returncode == 2 and "not among the evaluated datasets" in res.stderr

    # predict: an empty input is found before the model loads (this model does not even exist),
    # and no output folder is left behind
    (tmp_path / "empty").mkdir()
    res = entroad("predict", "--model", str(tmp_path / "no-model"), "--input", str(tmp_path / "empty"),
                  "--out", str(tmp_path / "pred"), cwd=tmp_path)
    assert res.returncode == 2 and "no images found" in res.stderr and "no-model" not in res.stderr
    assert not (tmp_path / "pred").exists()
    (tmp_path / "empty" / "a.png").write_bytes(b"")  # an input to score, but a missing model: still no folder
    res = entroad("predict", "--model", str(tmp_path / "no-model"), "--input", str(tmp_path / "empty"),
                  "--out", str(tmp_path / "pred"), cwd=tmp_path)
    assert res.returncode == 2 and "no such checkpoint folder" in res.stderr
    assert not (tmp_path / "pred").exists()


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
