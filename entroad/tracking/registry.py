"""The model registry: versions of ``tracking.registered_model``, aliases, decisions.

Aliases (stages are deprecated in MLflow 3): ``champion`` is what serves
(``models:/entroad@champion``), ``challenger`` the last candidate that went through the
gate. A version is created only for a model whose evaluation finished, with its lineage in
tags, and is deleted again if it does not become READY — so the registry never holds a
half-registered model, and an alias never points at a model that was not evaluated.
"""

from __future__ import annotations

import logging
from typing import Any

from entroad.errors import TrackingError

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
TAG_EVAL_RUN = "entroad.eval_run_id"
TAG_DECISION = "promotion.decision"


def _not_found(e: Exception) -> bool:
    code = getattr(e, "error_code", "")
    return code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}


def ensure_registered_model(client, name: str, description: str | None = None) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as e:
        if not _not_found(e):
            raise
        try:
            client.create_registered_model(name, description=description)
        except MlflowException as e2:  # created concurrently: fine
            if "ALREADY_EXISTS" not in getattr(e2, "error_code", ""):
                raise


def version_by_alias(client, name: str, alias: str):
    """The version behind ``alias``, or None (no registered model or alias yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as e:
        if _not_found(e) or "alias" in str(e).lower():
            return None
        raise


def get_version(client, name: str, version: str | int):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException as e:
        if _not_found(e):
            raise TrackingError(f"registered model {name!r} has no version {version}") from None
        raise


def versions(client, name: str) -> list:
    """All versions of ``name``, oldest first (empty when the model is not registered)."""
    found = client.search_model_versions(f"name = '{name}'")
    return sorted(found, key=lambda v: int(v.version))


def version_for_run(client, name: str, train_run_id: str):
    """The version registered from training run ``train_run_id``, if any (re-runs reuse it)."""
    found = client.search_model_versions(f"name = '{name}' and run_id = '{train_run_id}'")
    ready = [v for v in found if v.status == "READY"]
    return max(ready, key=lambda v: int(v.version)) if ready else None


def aliases_of(client, name: str) -> dict[str, str]:
    """``{alias: version}`` (read through get_model_version_by_alias: search results may lack them)."""
    out = {}
    for alias in (CHAMPION, CHALLENGER):
        v = version_by_alias(client, name, alias)
        if v is not None:
            out[alias] = str(v.version)
    return out


def register_version(
    client,
    name: str,
    model_uri: str,
    train_run_id: str,
    eval_run_id: str,
    tags: dict[str, Any] | None = None,
    description: str | None = None,
):
    """Create a version from the logged model of ``train_run_id``; idempotent per run.

    Returns ``(version, created)``.
    """
    existing = version_for_run(client, name, train_run_id)
    if existing is not None:
        return existing, False
    ensure_registered_model(client, name, "EntroAD zero-shot anomaly detector (see the version descriptions for decisions)")
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    all_tags = {TAG_EVAL_RUN: eval_run_id, TAG_DECISION: "pending", **{k: str(v) for k, v in (tags or {}).items()}}
    mv = client.create_model_version(
        name, source=model_uri, run_id=train_run_id, tags=all_tags, description=description, model_id=model_id
    )
    if mv.status != "READY":
        mv = client.get_model_version(name, mv.version)
    if mv.status != "READY":
        # never leave a version that cannot be served behind
        client.delete_model_version(name, mv.version)
        raise TrackingError(f"registering {model_uri} as {name} failed (status {mv.status}: {mv.status_message})")
    log.info("registered %s version %s from run %s", name, mv.version, train_run_id)
    return mv, True


def set_tags(client, name: str, version: str, tags: dict[str, Any]) -> None:
    for k, v in tags.items():
        client.set_model_version_tag(name, str(version), k, str(v))


def set_alias(client, name: str, alias: str, version: str) -> None:
    client.set_registered_model_alias(name, alias, str(version))
