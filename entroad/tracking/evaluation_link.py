"""``entroad evaluate --track``: a CLI evaluation logged in MLflow and linked to the model's
registry version, so that ``compare``, ``promote`` and ``models`` judge it on that data.

:func:`locate` runs before any image is scored (a model that cannot be linked fails at once);
:func:`link` logs the finished evaluation under the model's training run and makes it the
evaluation the registry judges the version on: the version's ``entroad.eval_run_id`` tag points
at it and an undecided-again version waits for the gate (a new evaluation re-opens the
decision). A tracked training run that was never registered is registered now.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entroad.config import Params
from entroad.errors import TrackingError
from entroad.tracking import lineage, registry, runs, store
from entroad.tracking.gate import register_candidate

_VERSION_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?")
_RUN_URI = re.compile(r"runs:/(?P<run>[0-9a-f]{8,})(?:/.*)?")


@dataclass
class Target:
    """Where a tracked evaluation goes: the training run, and its version when registered."""

    train_run_id: str
    version: str | None  # candidate version number; None: registered by :func:`link`


@dataclass
class Linked:
    eval_run_id: str
    version: str
    registered: bool  # True: the version was created by this evaluation
    is_champion: bool


def _train_run_of_folder(client, params: Params, folder: Path) -> str:
    """The tracked training run whose output folder holds the checkpoint ``folder``."""
    from entroad.model_source import find_checkpoint_dir

    ckpt = find_checkpoint_dir(folder).resolve()
    candidates = [ckpt, *ckpt.parents][:3]  # <out>/model, <out>/checkpoints/epoch-N
    exp = client.get_experiment_by_name(params.tracking.experiment)
    if exp is not None:
        for c in candidates:
            found = client.search_runs(
                [exp.experiment_id],
                filter_string=f"tags.`{lineage.TAG_KIND}` = 'train' and tags.`entroad.train_dir` = '{c}'",
                order_by=["attributes.start_time DESC"], max_results=1,
            )
            if found:
                return found[0].info.run_id
    raise TrackingError(
        f"{folder} has no MLflow training run (trained with --no-track, or in another store), so its "
        f"evaluation cannot reach the registry. Train it with tracking (`entroad train --out {ckpt.parent}`) "
        "or evaluate a registered model (--model models:/"
        f"{params.tracking.registered_model}@champion)"
    )


def locate(params: Params, model: str, root: str | Path | None = None) -> Target:
    """The training run (and registry version) of ``model``; fails before any evaluation."""
    client = store.client(params, root)
    name = params.tracking.registered_model
    text = str(model).strip()
    m = _VERSION_URI.fullmatch(text)
    if m:
        if m["name"] != name:
            raise TrackingError(f"--track links to the registered model {name!r} (tracking.registered_model), not {m['name']!r}")
        if m["alias"]:
            mv = registry.version_by_alias(client, name, m["alias"])
            if mv is None:
                raise TrackingError(
                    f"{name!r} has no @{m['alias']} yet; `entroad models` lists the versions, "
                    f"`entroad promote --version N` makes one @champion"
                )
        else:
            mv = registry.get_version(client, name, m["version"])
        return Target(mv.run_id, str(mv.version))
    r = _RUN_URI.fullmatch(text)
    if r:
        run_id = r["run"]
    elif text.startswith(("models:/", "runs:/")) or "://" in text:
        raise TrackingError(
            f"--track needs a checkpoint folder, models:/{name}@ALIAS, models:/{name}/VERSION or runs:/RUN_ID/model; got {text!r}"
        )
    else:
        run_id = _train_run_of_folder(client, params, Path(text).expanduser())
    mv = registry.version_for_run(client, name, run_id)
    return Target(run_id, str(mv.version) if mv is not None else None)


def link(params: Params, target: Target, result: Any, out_dir: str | Path, root: str | Path | None = None) -> Linked:
    """Log ``result`` under the training run and make it the version's evaluation."""
    client = store.client(params, root)
    name = params.tracking.registered_model
    tags = {lineage.TAG_MODEL_VERSION: target.version} if target.version else {}
    eval_run_id = runs.log_evaluation_run(params, result, train_run_id=target.train_run_id, out_dir=out_dir,
                                          root=root, tags=tags)
    champ = registry.version_by_alias(client, name, registry.CHAMPION)
    if target.version is None:
        mv, created = register_candidate(params, target.train_run_id, eval_run_id, root)
        version = str(mv.version)
    else:
        version, created = target.version, False
        update = {registry.TAG_EVAL_RUN: eval_run_id}
        if champ is None or str(champ.version) != version:
            update[registry.TAG_DECISION] = "pending"
        registry.set_tags(client, name, version, update)
    return Linked(eval_run_id, version, created, champ is not None and str(champ.version) == version)


def next_steps(params: Params, linked: Linked) -> list[str]:
    """The commands that take a linked evaluation on to the registry decision."""
    if linked.is_champion:
        return ["entroad compare @champion latest    # the newest version against the champion, on this data",
                "entroad models"]
    return [f"entroad compare @champion {linked.version}",
            f"entroad promote --version {linked.version} --dry-run   # the gate's decision, nothing moved",
            f"entroad promote --version {linked.version}"]
