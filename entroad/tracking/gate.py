"""Register an evaluated model and run the promotion gate against the registry.

The steps the retrain flow and ``entroad promote`` share:

* :func:`register_candidate` — a version for a training run whose evaluation finished;
* :func:`run_gate` — load both evaluations from MLflow, re-evaluate the champion on the
  candidate's data when they differ (if allowed), :func:`~entroad.tracking.promotion.decide`,
  and (unless ``dry_run``) :func:`~entroad.tracking.promotion.apply_decision`, all under the
  pipeline lock.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entroad.config import Params
from entroad.errors import PromotionError, TrackingError
from entroad.evaluation import engine
from entroad.locks import pipeline_lock
from entroad.tracking import lineage, registry, runs, store
from entroad.tracking.promotion import (
    REEVALUATE,
    TAG_COMPARED_TO,
    TAG_REASON,
    Decision,
    Evaluation,
    apply_decision,
    decide,
)

log = logging.getLogger(__name__)

UNDECIDED = frozenset({"pending", "needs_reevaluation"})  # decisions the gate still has to make


@dataclass
class GateResult:
    decision: Decision | None  # None: nothing to decide (the candidate already is champion)
    applied: bool
    candidate_version: str
    champion_before: str | None
    champion_after: str | None
    reevaluation_run: str | None = None
    message: str = ""


def register_candidate(params: Params, train_run_id: str, eval_run_id: str, root: str | Path | None = None):
    """A registry version for the model of ``train_run_id`` (evaluated in ``eval_run_id``).

    Idempotent: a training run already registered returns its version. Returns
    ``(ModelVersion, created)``.
    """
    client = store.client(params, root)
    eval_run = client.get_run(eval_run_id)
    if eval_run.info.status != "FINISHED" or eval_run.data.tags.get(lineage.TAG_KIND) != "evaluate":
        raise TrackingError(f"run {eval_run_id} is not a finished evaluation run; only evaluated models are registered")
    train_run = client.get_run(train_run_id)
    tags = {
        k: v for k, v in train_run.data.tags.items()
        if k.startswith(("backbone.", "git_", lineage.DATA_VERSION_PREFIX)) or k == lineage.TAG_RANDOM_INIT
    }
    tags.update({f"eval.{k}": v for k, v in eval_run.data.tags.items() if k.startswith(lineage.DATA_VERSION_PREFIX)})
    mv, created = registry.register_version(
        client, params.tracking.registered_model, runs.model_uri_of(train_run_id, client),
        train_run_id, eval_run_id, tags=tags,
        description="Awaiting the promotion gate.",
    )
    if not created and mv.tags.get(registry.TAG_EVAL_RUN) != eval_run_id:
        registry.set_tags(client, params.tracking.registered_model, mv.version, {registry.TAG_EVAL_RUN: eval_run_id})
    return mv, created


def evaluation_of_version(client, mv, want: Mapping[str, str] | None = None) -> Evaluation | None:
    """The version's evaluation: the newest finished one covering ``want`` (dataset -> data
    version) exactly, else (without ``want``) the one tagged on the version, else the newest."""
    found = runs.find_evaluations(client, mv.run_id)
    summaries = [runs.evaluation_of_run(r) for r in found]
    chosen = None
    if want:
        chosen = next(
            (s for s in summaries if all(d in s["datasets"] and s["data_versions"].get(d) == v for d, v in want.items())),
            None,
        )
        if chosen is None and summaries:
            chosen = summaries[0]  # the gate reports the mismatch
    else:
        tagged = mv.tags.get(registry.TAG_EVAL_RUN)
        chosen = next((s for s in summaries if s["run_id"] == tagged), summaries[0] if summaries else None)
    if chosen is None:
        return None
    return Evaluation.from_run_summary(chosen, label=f"v{mv.version}", version=str(mv.version))


def reevaluate_version(
    params: Params, mv, datasets: list[str], out_dir: str | Path | None = None, root: str | Path | None = None
) -> str:
    """Evaluate a registered version on ``datasets`` (current data) and log it; returns the run id."""
    name = mv.name  # the candidates model of a two-model registry
    store.connect(params, root)
    uri = f"models:/{name}/{mv.version}"
    log.info("re-evaluating %s on %s (the current data versions)", uri, ", ".join(datasets))
    try:
        result = engine.evaluate(uri, datasets, params, out_dir, progress=False)
    except Exception as e:
        raise PromotionError(
            f"cannot re-evaluate champion {name} v{mv.version} on the current data ({type(e).__name__}: {e}); "
            "the champion is left unchanged"
        ) from e
    return runs.log_evaluation_run(
        params, result, train_run_id=mv.run_id, out_dir=out_dir, root=root,
        run_name=f"reevaluate-v{mv.version}", tags={lineage.TAG_MODEL_VERSION: str(mv.version)},
    )


def _candidate(client, name: str, version: str | int | None):
    """``version``, else the newest version still waiting for a decision, else @challenger."""
    if version is not None:
        return registry.get_version(client, name, str(version).lstrip("vV"))
    all_versions = registry.versions(client, name)
    if not all_versions:
        raise TrackingError(
            f"registered model {name!r} has no versions yet; run the retrain flow (`python -m flows retrain`), or "
            "register your own: `entroad evaluate --model runs/<train>/model --data DATASET --track`"
        )
    waiting = [v for v in all_versions if v.tags.get(registry.TAG_DECISION, "pending") in UNDECIDED]
    if waiting:
        return waiting[-1]
    mv = registry.version_by_alias(client, name, registry.CHALLENGER)
    return mv if mv is not None else all_versions[-1]


def run_gate(
    params: Params,
    version: str | int | None = None,
    *,
    dry_run: bool = False,
    reevaluate: bool = False,
    reevaluation_dir: str | Path | None = None,
    root: str | Path | None = None,
    lock_wait_s: float = 0.0,
    hold_lock: bool = True,
) -> GateResult:
    """Decide (and unless ``dry_run`` apply) the promotion of ``version`` (default: the newest
    version still waiting for a decision, else @challenger). ``hold_lock=False`` when the caller already holds the pipeline lock."""
    lock = pipeline_lock(root, wait_s=lock_wait_s, what="promotion") if hold_lock else contextlib.nullcontext()
    with lock:
        return _gate(params, version, dry_run, reevaluate, reevaluation_dir, root)


def _gate(params: Params, version, dry_run: bool, reevaluate: bool, reevaluation_dir, root) -> GateResult:
    name = params.tracking.registered_model
    client = store.client(params, root)
    cand = _candidate(client, name, version)
    champ = registry.version_by_alias(client, name, registry.CHAMPION)
    before = str(champ.version) if champ is not None else None
    if champ is not None and str(champ.version) == str(cand.version):
        return GateResult(None, False, str(cand.version), before, before, message=f"v{cand.version} already is @champion")
    cand_eval = evaluation_of_version(client, cand)
    want = {d: cand_eval.data_versions[d] for d in cand_eval.targets if d in cand_eval.data_versions} if cand_eval else None
    champ_eval = evaluation_of_version(client, champ, want) if champ is not None else None
    if champ is not None and champ_eval is None:
        champ_eval = Evaluation(label=f"v{champ.version}", metrics={}, data_versions={}, version=str(champ.version))
    decision = decide(cand_eval, champ_eval, params.promotion)
    rerun = None
    if decision.outcome == REEVALUATE and reevaluate and not dry_run:
        try:
            rerun = reevaluate_version(params, champ, cand_eval.targets, reevaluation_dir, root)
        except PromotionError:
            apply_decision(client, name, decision)  # recorded as needs_reevaluation, champion untouched
            raise
        champ_eval = evaluation_of_version(client, registry.get_version(client, name, champ.version), want)
        decision = decide(cand_eval, champ_eval, params.promotion)
    if dry_run:
        return GateResult(decision, False, str(cand.version), before, before, rerun, "dry run: nothing recorded")
    apply_decision(client, name, decision)
    after = str(cand.version) if decision.promote else before
    if decision.outcome == REEVALUATE:
        raise PromotionError(
            f"{decision.summary()}. Re-run with `entroad promote --version {cand.version} --reevaluate` "
            "to evaluate the champion on the candidate's data"
        )
    return GateResult(decision, True, str(cand.version), before, after, rerun, decision.summary())


def gate_once(params: Params, version: str, reevaluation_dir: str | Path, root: str | Path | None = None) -> dict[str, Any]:
    """The pipeline's gate step: run the gate for ``version`` (re-evaluating the champion when
    needed) unless it was already decided against today's champion; the caller holds the
    pipeline lock. Returns a plain summary (verdict, champion, Markdown, reasons, table rows)."""
    client = store.client(params, root)
    name = params.tracking.registered_model
    mv = registry.get_version(client, name, version)
    champ = registry.version_by_alias(client, name, registry.CHAMPION)
    decided = mv.tags.get(registry.TAG_DECISION, "pending")
    current = f"v{champ.version}" if champ is not None else "none"
    if decided not in UNDECIDED and (
        mv.tags.get(TAG_COMPARED_TO) == current or (champ is not None and str(champ.version) == str(version))
    ):
        return {"verdict": decided, "reused": True, "champion": str(champ.version) if champ else None,
                "markdown": mv.description or "", "reasons": [mv.tags.get(TAG_REASON, "")], "rows": []}
    res = run_gate(params, version, reevaluate=True, reevaluation_dir=reevaluation_dir, root=root, hold_lock=False)
    d = res.decision
    return {
        "verdict": d.verdict if d else "already_champion",
        "reused": False,
        "champion": res.champion_after,
        "champion_before": res.champion_before,
        "markdown": d.to_markdown() if d else res.message,
        "reasons": d.reasons if d else [res.message],
        "rows": d.table() if d else [],
        "reevaluation_run": res.reevaluation_run,
    }
