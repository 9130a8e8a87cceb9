"""``entroad review``: help, a clear error for a wrong folder, and the remote-access token."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from typer.testing import CliRunner

from entroad.cli import app
from entroad.errors import InputError
from tests.review.browser import ReviewServer

runner = CliRunner()


def test_help_names_both_verbs():
    res = runner.invoke(app, ["review", "--help"])
    assert res.exit_code == 0 and "serve" in res.output and "export" in res.output
    res = runner.invoke(app, ["review", "export", "--help"])
    assert res.exit_code == 0 and "--dataset" in res.output and "--conflicts" in res.output


def test_a_folder_that_is_not_predictions_is_a_clear_error(tmp_path):
    res = runner.invoke(app, ["review", str(tmp_path)])
    assert isinstance(res.exception, InputError)
    assert "not a predictions folder: missing predict.json and scores.csv" in str(res.exception)


def _status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.integration
def test_remote_host_gets_a_generated_token_printed_once(predictions, monkeypatch):
    monkeypatch.delenv("ENTROAD_REVIEW_TOKEN", raising=False)
    with ReviewServer(predictions, "--host", "127.0.0.2") as server:
        printed = [line for line in server.output if "token=" in line]
        assert len(printed) == 1
        base, token = server.url.split("?token=")
        assert len(token) >= 32
        for path in ("", "api/queue", "img/0/thumb", "static/review.js", "files/scores.csv"):
            assert _status(base + path) == 401, path
        assert _status(base + "api/queue", {"Authorization": f"Bearer {token}"}) == 200
