"""The model verbs of the `entroad` CLI, run as a user would (subprocess, real exit codes)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import yaml

from entroad.data.synthetic import write_processed_dataset
from tests.conftest import tiny_params


def entroad(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "entroad.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_train_and_inspect_from_the_command_line(tmp_path):
    ds = write_processed_dataset(tmp_path, "aux", ["dots"], 2, 2, 112, seed=0)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params(**{"train.epochs": 1}).resolved()))
    out = tmp_path / "run"
    res = entroad("train", "--params", str(params), "--dataset-dir", str(ds.root), "--out", str(out), "--no-track")
    assert res.returncode == 0, res.stderr
    assert "trained 1 epoch(s) on aux" in res.stdout
    assert (res.stdout + res.stderr).count("RANDOM-INIT") == 1  # one notice, however often the backbone loads
    said = " ".join((res.stdout + res.stderr).split())  # the log goes where rich sends it
    assert re.search(r"epoch 1/1 loss \d+\.\d{4} \(\d+\.\ds; ETA 0s\)", said), said  # progress in the log
    for form in (out / "model", out):  # the checkpoint folder and the training folder above it
        res = entroad("inspect", str(form))
        assert res.returncode == 0 and "entroad-tiny" in res.stdout and "random-init" in res.stdout


def test_user_errors_are_one_line_with_exit_code(tmp_path):
    res = entroad("train", "--set", "model.entropy=3d", "--no-track", cwd=tmp_path)
    assert res.returncode == 2
    assert "model.entropy" in res.stderr and "Traceback" not in res.stderr
    res = entroad("weights", "import", str(tmp_path / "missing.safetensors"))
    assert res.returncode == 2 and "no such weights file" in res.stderr
    res = entroad("inspect", str(tmp_path))
    assert res.returncode == 2 and "no EntroAD checkpoint" in res.stderr


def test_help_explains_every_model_verb():
    for verb in (["train"], ["inspect"], ["weights", "import"], ["weights", "fetch"]):
        res = entroad(*verb, "--help")
        assert res.returncode == 0 and "Usage" in res.stdout


def test_epoch_lines_reach_the_flow_logs(tmp_path):
    """Prefect's root level (WARNING) must not swallow the per-epoch lines: they are the only
    sign of life during the long step of a quickstart or retrain."""
    ds = write_processed_dataset(tmp_path, "aux", ["dots"], 2, 2, 112, seed=0)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params(**{"train.epochs": 2}).resolved()))
    code = (
        "import flows.train\n"
        "from prefect.logging.configuration import setup_logging\n"
        "from entroad.config import load_params\n"
        "from entroad.train import train\n"
        "setup_logging()\n"
        f"train(load_params({str(params)!r}), {str(tmp_path / 'run')!r}, dataset_dir={str(ds.root)!r}, progress=False)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr
    lines = [line for line in (res.stdout + res.stderr).splitlines() if "entroad.train - epoch" in line]
    assert len(lines) == 2 and re.search(r"epoch 1/2 loss \d+\.\d{4} \(\d+\.\ds; ETA \d+s\)", lines[0]), lines
