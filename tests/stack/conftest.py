"""The team stack under test: real PostgreSQL, moto (S3 API), MLflow server with basic-auth,
Prefect server and a process worker, started once per session by the product's own launcher
(``entroad.stack.launch``) and stopped by a finalizer even when tests fail.

These tests run only with ``ENTROAD_STACK_TESTS=1`` (``make test-stack``); then a missing
package or server binary is a failure. Otherwise they skip with one line saying why.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

REQUIRED = os.environ.get("ENTROAD_STACK_TESTS") == "1"
ROOT = Path(__file__).resolve().parents[2]


def missing_requirements() -> list[str]:
    out = [m for m in ("moto", "boto3", "psycopg2", "dvc_s3", "flask_wtf") if importlib.util.find_spec(m) is None]
    try:
        from entroad.stack.postgres import bindir

        bindir()
    except Exception:  # noqa: BLE001 - reported below as the missing piece
        out.append("PostgreSQL server (apt-get install postgresql)")
    return out


def pytest_collection_modifyitems(config, items):
    here = [i for i in items if Path(str(i.fspath)).is_relative_to(Path(__file__).parent)
            and {"stack", "prefect_stack"} & set(getattr(i, "fixturenames", ()))]
    if not here or REQUIRED:
        return
    missing = missing_requirements()
    why = (f"team stack not installed ({', '.join(missing)}): pip install -e '.[stack]'" if missing
           else "team stack tests run with ENTROAD_STACK_TESTS=1 (make test-stack)")
    for item in here:
        item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="session")
def stack_dir():
    # not under pytest's 0700 tmp folders: the PostgreSQL account must traverse the path
    d = Path(tempfile.mkdtemp(prefix="entroad-stack-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def stack(stack_dir, request):
    """PostgreSQL + S3 + MLflow (auth) with identities and both registered models."""
    from entroad.stack import launch

    missing = missing_requirements()
    if missing:
        pytest.fail(f"ENTROAD_STACK_TESTS=1 but the stack cannot run: missing {', '.join(missing)}")
    request.addfinalizer(lambda: launch.down(stack_dir) if (stack_dir / launch.STATE_FILE).exists() else None)
    # a CI timeout sends SIGTERM: turn it into KeyboardInterrupt so pytest still runs the finalizer
    signal.signal(signal.SIGTERM, _interrupt)
    return launch.up(stack_dir, ROOT, prefect=False)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def prefect_stack(stack):
    """The Prefect server (on the same PostgreSQL), the process pool and one worker."""
    from entroad.stack import launch

    if "prefect" not in stack.pids:
        launch.start_prefect(stack)
        launch.start_worker(stack)
    return stack


@pytest.fixture
def as_user(stack, monkeypatch):
    """``as_user("trainer")``: this test process now talks to the server as that identity."""

    def switch(user: str):
        for k, v in stack.client_env(user).items():
            monkeypatch.setenv(k, v)
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=stack.mlflow_url, registry_uri=stack.mlflow_url)

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    return switch


def planted_passwords(stack) -> list[str]:
    from entroad.stack.launch import SECRET_NAMES

    return [stack.secret(n) for n in SECRET_NAMES]
