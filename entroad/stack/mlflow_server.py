"""The shared MLflow tracking server: PostgreSQL backend, S3 artifacts, basic-auth users.

* runs and the registry in the ``mlflow`` database, the auth app's users and permissions in
  its own ``mlflow_auth`` database (never mixed with the tracking tables);
* artifacts proxied by the server to ``s3://<bucket>/mlflow`` (clients get
  ``mlflow-artifacts:/`` URIs and need no S3 credentials; ``MLFLOW_S3_ENDPOINT_URL`` is set
  on the server only);
* one server worker: several workers creating the auth tables at once have raced.
"""

from __future__ import annotations

import sys
from pathlib import Path

from entroad.stack.processes import Server, StackError, start, wait_until

AUTH_DB = "mlflow_auth"
TRACKING_DB = "mlflow"


def write_auth_config(path: Path, auth_db_url: str) -> Path:
    """The basic-auth app's config: READ for every authenticated user unless granted more."""
    path.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {auth_db_url.replace('%', '%%')}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
        # password hashes are deliberately slow to check; one check per user and minute
        "auth_cache_ttl_seconds = 60\n"
    )
    path.chmod(0o600)
    return path


def start_mlflow(port: int, backend_url: str, artifacts: str, auth_config: Path, log: Path,
                 env: dict[str, str], admin_password: str) -> Server:
    exe = Path(sys.executable).parent / "mlflow"
    if not exe.exists():
        raise StackError("the mlflow command is not installed in this environment: `pip install -e '.[stack]'`")
    # the admin password only takes effect when the user store is created (first start)
    server_env = {**env, "MLFLOW_AUTH_CONFIG_PATH": str(auth_config), "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password}
    cmd = [str(exe), "server", "--app-name", "basic-auth", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", backend_url, "--artifacts-destination", artifacts]
    return start("MLflow server", cmd, log, env=server_env)


def wait_mlflow(url: str, server: Server | None, timeout: float = 180.0) -> None:
    import requests

    wait_until(lambda: requests.get(url + "/health", timeout=2).ok, timeout, f"MLflow server on {url}",
               server.log if server else None, server.proc if server else None)
