"""Where runs and models go: the MLflow tracking + registry store.

Resolution order (first one set wins):

1. ``MLFLOW_TRACKING_URI`` in the environment;
2. ``tracking.uri`` in params.yaml;
3. the embedded store of the project: ``sqlite:///<root>/mlflow/mlflow.db`` with artifacts in
   ``<root>/<tracking.artifact_root>`` (``mlflow/artifacts``), both git-ignored.

``<root>`` is the current directory (the repository root when run from there), as for every
other relative path of params.yaml. A configured server is probed with a short timeout
first, so an unreachable server is one clear :class:`TrackingError` instead of minutes of
HTTP retries.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from entroad.config import Params
from entroad.errors import TrackingError

log = logging.getLogger(__name__)

EMBEDDED_DIR = "mlflow"
DB_FILE = "mlflow.db"
PROBE_TIMEOUT_S = 3.0
API_PROBE_TIMEOUT_S = 20.0
# MLflow retries HTTP calls for minutes by default; a pipeline should fail fast and say why.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
TRACKING_ENV, REGISTRY_ENV = "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"
# mlflow.set_tracking_uri/set_registry_uri also export these variables (for child processes).
# What *we* exported is remembered here, so a later resolve() in this process (another root,
# other params) is not mistaken for the user's choice.
_EXPORTED: dict[str, str] = {}


def _user_env(var: str) -> str:
    value = os.environ.get(var, "").strip()
    return "" if value and _EXPORTED.get(var) == value else value


@dataclass(frozen=True)
class TrackingTarget:
    """A resolved store: its URI, where new experiments put artifacts, and why it was chosen."""

    uri: str
    artifact_location: str | None  # None: the server decides
    source: str  # "MLFLOW_TRACKING_URI", "tracking.uri" or "embedded"

    @property
    def embedded(self) -> bool:
        return self.source == "embedded"

    @property
    def is_server(self) -> bool:
        return urlparse(self.uri).scheme in {"http", "https"}

    def describe(self) -> str:
        where = f"{self.uri} (from {self.source})"
        return where + (f", artifacts in {self.artifact_location}" if self.artifact_location else "")


def _root(root: str | Path | None) -> Path:
    return Path(root).resolve() if root is not None else Path.cwd().resolve()


def embedded_uri(root: str | Path | None = None) -> str:
    return f"sqlite:///{_root(root) / EMBEDDED_DIR / DB_FILE}"


def resolve(params: Params, root: str | Path | None = None) -> TrackingTarget:
    """The store this process should use (see the module docstring for the order)."""
    base = _root(root)
    env = _user_env(TRACKING_ENV)
    if env:
        uri, source = env, TRACKING_ENV
    elif params.tracking.uri:
        uri, source = params.tracking.uri, "tracking.uri"
    else:
        uri, source = embedded_uri(base), "embedded"
    return TrackingTarget(uri=uri, artifact_location=_artifact_location(params, base, uri), source=source)


def _artifact_location(params: Params, base: Path, uri: str) -> str | None:
    """Artifact root for experiments this project creates.

    A URI (``s3://…``) is used as is; a relative path only makes sense next to a local
    store (with a server, the server's ``--artifacts-destination`` decides).
    """
    raw = params.tracking.artifact_root
    if not raw:
        return None
    if urlparse(raw).scheme and not Path(raw).drive:
        return raw
    if urlparse(uri).scheme in {"http", "https"}:
        return None
    path = Path(raw).expanduser()
    return str(path if path.is_absolute() else base / path)


def tracking_uri(params: Params, root: str | Path | None = None) -> str:
    return resolve(params, root).uri


def check_reachable(target: TrackingTarget, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast with an actionable message when the store cannot be used."""
    scheme = urlparse(target.uri).scheme
    if scheme == "sqlite":
        db = Path(target.uri.removeprefix("sqlite:///"))
        if target.uri.startswith("sqlite:///") and db.is_absolute():
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise TrackingError(f"cannot create the MLflow store folder {db.parent}: {e}") from None
        return
    if scheme not in {"http", "https"}:
        return  # databricks, file stores...: MLflow itself reports problems
    import requests

    url = target.uri.rstrip("/") + "/health"
    try:
        reply = requests.get(url, timeout=timeout)
    except requests.RequestException as e:
        raise TrackingError(
            f"MLflow tracking server {target.uri} (from {target.source}) is unreachable: "
            f"{type(e).__name__}. Start it (see mlflow/README.md: `mlflow server --backend-store-uri "
            "sqlite:///mlflow/mlflow.db --artifacts-destination mlflow/artifacts`), fix the URI, or unset "
            "it to use the embedded store in mlflow/"
        ) from None
    if reply.status_code >= 500:
        raise TrackingError(f"MLflow tracking server {target.uri} answers {reply.status_code} on /health; check its logs")
    _probe_api(target, requests)


def _probe_api(target: TrackingTarget, requests) -> None:
    """One real API call: /health answers even when the server's database is down or the
    credentials are wrong, and the client would otherwise retry for minutes."""
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    url = target.uri.rstrip("/") + "/api/2.0/mlflow/experiments/search"
    try:
        reply = requests.get(url, params={"max_results": 1}, timeout=API_PROBE_TIMEOUT_S,
                             auth=(user, password or "") if user else None)
    except requests.RequestException as e:
        raise TrackingError(f"MLflow tracking server {target.uri} (from {target.source}) did not answer an API call "
                            f"within {API_PROBE_TIMEOUT_S:.0f} s ({type(e).__name__}); check the server and its log") from None
    if reply.status_code == 401:
        who = f"user {user!r}" if user else "no user"
        raise TrackingError(f"MLflow tracking server {target.uri} refused the credentials ({who}): set "
                            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account of that server")
    if reply.status_code >= 500:
        raise TrackingError(
            f"MLflow tracking server {target.uri} is up but fails ({reply.status_code}): its backend store "
            "(the database of `mlflow server --backend-store-uri`, e.g. PostgreSQL) is unreachable or failing; "
            "check that database and the server log"
        )


@contextlib.contextmanager
def access(action: str, target: str, hint: str) -> Iterator[None]:
    """Turn the server's PERMISSION_DENIED (basic-auth) into a :class:`TrackingError` that names
    the user, what was refused and what to do; other errors pass through unchanged."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as e:
        text = f"{e.error_code} {e}"
        if "PERMISSION_DENIED" not in text and "error code 403" not in text:  # 403: as wrapped by copy_model_version
            raise
        user = os.environ.get("MLFLOW_TRACKING_USERNAME") or "(no MLFLOW_TRACKING_USERNAME)"
        raise TrackingError(f"MLflow user {user!r} may not {action} on {target} (the server denied it): {hint}") from None


def connect(params: Params, root: str | Path | None = None, check: bool = True) -> TrackingTarget:
    """Resolve the store, probe it, and point MLflow's tracking and registry at it."""
    import mlflow

    target = resolve(params, root)
    if target.is_server:
        for key, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
    if check:
        check_reachable(target)
    user_registry = _user_env(REGISTRY_ENV)
    mlflow.set_tracking_uri(target.uri)
    if target.source == TRACKING_ENV:
        _EXPORTED.pop(TRACKING_ENV, None)
    else:
        _EXPORTED[TRACKING_ENV] = os.environ.get(TRACKING_ENV, "").strip()
    if not user_registry:
        mlflow.set_registry_uri(target.uri)
        _EXPORTED[REGISTRY_ENV] = os.environ.get(REGISTRY_ENV, "").strip()
    log.debug("MLflow store: %s", target.describe())
    return target


def client(params: Params, root: str | Path | None = None, check: bool = True):
    """An ``MlflowClient`` on the resolved store (probed first)."""
    from mlflow import MlflowClient

    target = connect(params, root, check)
    return MlflowClient(tracking_uri=target.uri, registry_uri=_user_env(REGISTRY_ENV) or target.uri)


def ensure_experiment(params: Params, root: str | Path | None = None) -> str:
    """Id of ``tracking.experiment``, created with the resolved artifact location if missing."""
    from mlflow.exceptions import MlflowException

    target = resolve(params, root)
    c = client(params, root)
    name = params.tracking.experiment
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise TrackingError(
                f"MLflow experiment {name!r} is deleted; restore it in the UI or set tracking.experiment to another name"
            )
        return exp.experiment_id
    try:
        return c.create_experiment(name, artifact_location=target.artifact_location)
    except MlflowException:
        # created concurrently by another process: use theirs
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _tool(name: str) -> str:
    """How to call a console script of this environment: its bare name when the shell would
    find this very one, else its path (e.g. ``.venv/bin/mlflow`` when the venv is not active)."""
    exe = Path(sys.executable).parent / name
    if not exe.exists() or shutil.which(name) == str(exe):
        return name
    try:
        return str(exe.relative_to(Path.cwd()))
    except ValueError:
        return str(exe)


def ui_command(params: Params, root: str | Path | None = None) -> str:
    """The one-liner that opens the MLflow UI on this store."""
    target = resolve(params, root)
    if target.is_server:
        return f"open {target.uri}"
    mlflow = _tool("mlflow")
    if target.uri.startswith("sqlite:///"):
        art = f" --default-artifact-root {target.artifact_location}" if target.artifact_location else ""
        return f"{mlflow} ui --backend-store-uri {target.uri}{art} --port 5000   # then open http://127.0.0.1:5000"
    return f"{mlflow} ui --backend-store-uri {target.uri} --port 5000"


def ui_lines(params: Params) -> list[str]:
    """The commands that open the MLflow and Prefect UIs (printed by `entroad ui` and the flows)."""
    return [
        f"MLflow UI:  {ui_command(params)}",
        f"Prefect UI: {_tool('prefect')} server start   # then open http://127.0.0.1:4200 (flow runs of this machine)",
    ]
