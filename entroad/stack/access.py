"""Identities and permissions of the shared registry (MLflow basic-auth), set up by the admin.

MLflow lets anyone with EDIT on a registered model create versions *and* set its aliases, so
inside one registered model trainers could move ``@champion``. The registry is therefore two
registered models, both created here by the admin:

* ``<name>-candidates``: every trained and evaluated model is registered here; trainers and
  the promoter have EDIT (register, tag, move ``@challenger``);
* ``<name>``: the production model holding ``@champion``; only the promoter has EDIT. The
  gate copies an accepted candidate across (``copy_model_version``, which keeps its run,
  tags and lineage) and sets ``@champion`` on the copy.

The viewer (and every other authenticated user) has READ: runs, models, ``compare``.
Passwords are never passed on command lines or written to logs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

from entroad.stack.processes import StackError

VIEWER, TRAINER, PROMOTER = "viewer", "trainer", "promoter"
IDENTITIES = (VIEWER, TRAINER, PROMOTER)
CANDIDATES_SUFFIX = "-candidates"
USER_ENV, PASSWORD_ENV = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"


def candidates_model(production: str) -> str:
    return production + CANDIDATES_SUFFIX


@contextlib.contextmanager
def identity(username: str, password: str) -> Iterator[None]:
    """Act as ``username`` in this process (MLflow reads the two variables on each request)."""
    saved = {k: os.environ.get(k) for k in (USER_ENV, PASSWORD_ENV)}
    os.environ[USER_ENV], os.environ[PASSWORD_ENV] = username, password
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _ensure_user(auth, username: str, password: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        auth.create_user(username, password)
    except MlflowException as e:
        if "already exists" not in str(e).lower() and "RESOURCE_ALREADY_EXISTS" not in str(e):
            raise
        auth.update_user_password(username, password)


def setup(tracking_uri: str, admin_password: str, passwords: Mapping[str, str], experiment: str,
          production: str, artifact_location: str | None = None) -> dict[str, str]:
    """Create the identities, the experiment and both registered models, and grant permissions.

    Idempotent (a second call re-applies the same state). Returns what was created, by name.
    """
    from mlflow.server.auth.client import AuthServiceClient

    missing = [u for u in IDENTITIES if not passwords.get(u)]
    if missing:
        raise StackError(f"no password for {', '.join(missing)}: every identity needs its own")
    with identity("admin", admin_password):
        auth = AuthServiceClient(tracking_uri)
        for user in IDENTITIES:
            _ensure_user(auth, user, passwords[user])
    return create_registry(tracking_uri, admin_password, experiment, production, artifact_location)


def create_registry(tracking_uri: str, admin_password: str, experiment: str, production: str,
                    artifact_location: str | None = None) -> dict[str, str]:
    """As the admin: the experiment, ``<production>-candidates`` and ``<production>``, and the
    grants of the table in the module docstring (the identities must exist)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    candidates = candidates_model(production)
    with identity("admin", admin_password):
        auth = AuthServiceClient(tracking_uri)
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(experiment, artifact_location=artifact_location)
        for model, what in ((candidates, "EntroAD candidates: every evaluated model (trainers register here)"),
                            (production, "EntroAD production: @champion, moved only by the promotion gate")):
            try:
                client.create_registered_model(model, description=what)
            except MlflowException as e:
                if "RESOURCE_ALREADY_EXISTS" not in str(e.error_code):
                    raise
        grants = [
            (TRAINER, "experiment", exp_id, "EDIT"),
            (PROMOTER, "experiment", exp_id, "EDIT"),
            (TRAINER, "registered_model", candidates, "EDIT"),
            (PROMOTER, "registered_model", candidates, "EDIT"),
            (PROMOTER, "registered_model", production, "EDIT"),
        ]
        for user, kind, resource, level in grants:
            try:
                auth.grant_user_permission(user, kind, resource, level)
            except MlflowException as e:
                if "RESOURCE_ALREADY_EXISTS" not in f"{e.error_code} {e}":  # granted by an earlier setup
                    raise
    return {"experiment_id": exp_id, "candidates": candidates, "production": production}
