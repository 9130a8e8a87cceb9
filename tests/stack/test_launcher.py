"""The launcher without servers: state file, secrets on disk only, the lines `make stack` prints."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from entroad.stack import access, launch
from entroad.stack.__main__ import _print_up


def _state(tmp_path) -> launch.StackState:
    folder = tmp_path / "st"
    folder.mkdir()
    launch._ensure_secrets(folder)
    st = launch.StackState(folder=str(folder), root=str(tmp_path), ports={"postgres": 1, "s3": 2, "mlflow": 3, "prefect": 4})
    st.save()
    return st


def test_secrets_are_private_and_never_printed(tmp_path, capsys):
    st = _state(tmp_path)
    secrets = {n: st.secret(n) for n in launch.SECRET_NAMES}
    assert len(set(secrets.values())) == len(secrets) and all(len(v) >= 20 for v in secrets.values())
    for n in launch.SECRET_NAMES:
        assert stat.S_IMODE(os.stat(st.secret_file(n)).st_mode) == 0o600
    _print_up(st)
    printed = capsys.readouterr().out
    assert "http://127.0.0.1:3" in printed and "http://127.0.0.1:4" in printed
    assert "export MLFLOW_TRACKING_USERNAME=trainer" in printed
    assert not [n for n, v in secrets.items() if v in printed]


def test_export_lines_give_the_identity_its_password_in_a_shell(tmp_path):
    st = _state(tmp_path)
    lines = launch.StackState.load(st.folder).export_lines(access.PROMOTER)
    script = "\n".join([*lines, 'printf "%s|%s|%s" "$MLFLOW_TRACKING_USERNAME" "$MLFLOW_TRACKING_PASSWORD" "$AWS_SECRET_ACCESS_KEY"'])
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    assert out == f"promoter|{st.secret('promoter')}|{st.secret('s3')}"
    env = subprocess.run([sys.executable, "-m", "entroad.stack", "env", "--state", st.folder, "--user", "viewer"],
                         capture_output=True, text=True, check=True).stdout
    assert "MLFLOW_TRACKING_USERNAME=viewer" in env and st.secret("viewer") not in env
