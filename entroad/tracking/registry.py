"""The model registry: versions of ``tracking.registered_model``, aliases, decisions.

Aliases (stages are deprecated in MLflow 3): ``champion`` is what serves
(``models:/entroad@champion``), ``challenger`` the last candidate that went through the
gate. A version is created only for a model whose evaluation finished, with its lineage in
tags, and is deleted again if it does not become READY — so the registry never holds a
half-registered model, and an alias never points at a model that was not evaluated.

**Team registry (two models).** MLflow lets anyone with EDIT on a registered model set its
aliases, and registering versions needs EDIT too, so one model cannot keep trainers from
moving ``@champion``. When the registry holds ``<name>-candidates`` (created up front by
the admin, see ``entroad.stack.access``), versions are registered there (trainers have
EDIT) and ``<name>`` is the production model, writable only by the promoter: promoting
copies the candidate version across (same run, tags and artifacts) and sets ``@champion``
on the copy. Every function here takes the configured ``name`` and speaks in *candidate*
version numbers in both layouts, so callers (gate, compare, models, flows) need not know
which one they run on; ``models:/<name>@champion`` serves in both.
"""

from __future__ import annotations

import logging
from typing import Any

from entroad.errors import TrackingError
from entroad.tracking.store import access

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
TAG_EVAL_RUN = "entroad.eval_run_id"
TAG_DECISION = "promotion.decision"
CANDIDATES_SUFFIX = "-candidates"
_SPLIT: set[tuple[str, str]] = set()  # (registry URI, name) known to be two models: that never reverts


def _not_found(e: Exception) -> bool:
    code = getattr(e, "error_code", "")
    return code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}


def candidates_of(client, name: str) -> str:
    """Where versions of ``name`` are registered: ``<name>-candidates`` if it exists, else ``name``."""
    from mlflow.exceptions import MlflowException

    key = (str(getattr(client, "_registry_uri", "")), name)
    if key in _SPLIT:
        return name + CANDIDATES_SUFFIX
    try:
        client.get_registered_model(name + CANDIDATES_SUFFIX)
    except MlflowException as e:
        if _not_found(e):
            return name
        raise
    _SPLIT.add(key)
    return name + CANDIDATES_SUFFIX


def split(client, name: str) -> bool:
    return candidates_of(client, name) != name


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


def _by_alias(client, name: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as e:
        if _not_found(e) or "alias" in str(e).lower():
            return None
        raise


def version_by_alias(client, name: str, alias: str):
    """The (candidate) version behind ``alias``, or None (no registered model or alias yet).

    In the two-model layout ``@champion`` is read from the production model and mapped back
    to the candidate version it was copied from.
    """
    cand = candidates_of(client, name)
    if alias != CHAMPION or cand == name:
        return _by_alias(client, cand, alias)
    prod = _by_alias(client, name, CHAMPION)
    if prod is None:
        return None
    prefix = f"models:/{cand}/"
    if not str(prod.source).startswith(prefix):
        raise TrackingError(
            f"{name}@champion (v{prod.version}) was not copied from {cand!r} (source {prod.source}); "
            f"promote a candidate with `entroad promote --version N` as the promoter"
        )
    return get_version(client, name, prod.source.removeprefix(prefix))


def get_version(client, name: str, version: str | int):
    from mlflow.exceptions import MlflowException

    cand = candidates_of(client, name)
    try:
        return client.get_model_version(cand, str(version))
    except MlflowException as e:
        if _not_found(e):
            raise TrackingError(f"registered model {cand!r} has no version {version}") from None
        raise


def versions(client, name: str) -> list:
    """All versions of ``name``, oldest first (empty when the model is not registered)."""
    found = client.search_model_versions(f"name = '{candidates_of(client, name)}'")
    return sorted(found, key=lambda v: int(v.version))


def version_for_run(client, name: str, train_run_id: str):
    """The version registered from training run ``train_run_id``, if any (re-runs reuse it)."""
    found = client.search_model_versions(f"name = '{candidates_of(client, name)}' and run_id = '{train_run_id}'")
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
    cand = candidates_of(client, name)
    with access("register versions", f"registered model {cand!r}", f"trainers need EDIT on {cand!r}; ask the MLflow admin"):
        ensure_registered_model(client, cand, "EntroAD zero-shot anomaly detector (see the version descriptions for decisions)")
        model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
        all_tags = {TAG_EVAL_RUN: eval_run_id, TAG_DECISION: "pending", **{k: str(v) for k, v in (tags or {}).items()}}
        mv = client.create_model_version(
            cand, source=model_uri, run_id=train_run_id, tags=all_tags, description=description, model_id=model_id
        )
    if mv.status != "READY":
        mv = client.get_model_version(cand, mv.version)
    if mv.status != "READY":
        # never leave a version that cannot be served behind
        client.delete_model_version(cand, mv.version)
        raise TrackingError(f"registering {model_uri} as {cand} failed (status {mv.status}: {mv.status_message})")
    log.info("registered %s version %s from run %s", cand, mv.version, train_run_id)
    return mv, True


def set_tags(client, name: str, version: str, tags: dict[str, Any]) -> None:
    cand = candidates_of(client, name)
    with access("tag versions", f"registered model {cand!r}", f"recording decisions needs EDIT on {cand!r} (the promoter has it)"):
        for k, v in tags.items():
            client.set_model_version_tag(cand, str(version), k, str(v))


def describe(client, name: str, version: str, text: str) -> None:
    cand = candidates_of(client, name)
    with access("describe versions", f"registered model {cand!r}", f"recording decisions needs EDIT on {cand!r} (the promoter has it)"):
        client.update_model_version(cand, str(version), description=text)


def set_alias(client, name: str, alias: str, version: str) -> None:
    """Point ``alias`` at candidate ``version``; ``@champion`` of a two-model registry is set on
    a copy of it in the production model (made once per candidate version)."""
    cand = candidates_of(client, name)
    if alias != CHAMPION or cand == name:
        with access(f"set @{alias}", f"registered model {cand!r}", f"that needs EDIT on {cand!r}; ask the MLflow admin"):
            client.set_registered_model_alias(cand, alias, str(version))
        return
    hint = f"only the promoter identity moves {name}@champion: run `entroad promote` with its MLFLOW_TRACKING_USERNAME/PASSWORD"
    src = get_version(client, name, version)
    source = f"models:/{cand}/{src.version}"
    with access("promote to @champion", f"registered model {name!r}", hint):
        copies = [v for v in client.search_model_versions(f"name = '{name}'") if v.source == source]
        if copies:
            target = min(copies, key=lambda v: int(v.version))
        else:
            # what MlflowClient.copy_model_version does, without its attempt to create the model
            target = client.create_model_version(name, source=source, run_id=src.run_id, tags=dict(src.tags),
                                                 description=src.description, model_id=src.model_id)
        client.set_registered_model_alias(name, CHAMPION, str(target.version))
    log.info("%s v%s (copy of %s v%s) is @champion", name, target.version, cand, src.version)
