"""The promotion gate: the written rule that moves ``@champion``.

Policy (``promotion`` in params.yaml: ``metrics``, ``margin``, ``tolerance``; all in points
of percent):

1. The candidate's evaluation must have finished with every promotion metric defined on at
   least one target dataset (datasets other than the training domain). Otherwise: rejected.
2. No champion yet: the candidate becomes champion (the first model of the registry).
3. Candidate and champion must have been evaluated on the **same data versions** of every
   target dataset. Otherwise no decision is made: the champion is re-evaluated on the
   candidate's data first (``reevaluate_champion``), never compared across data.
4. Mean improvement: the mean over the promotion metrics of each metric's mean over the
   target datasets (pairs defined for both models) must beat the champion's by at least
   ``margin`` points, and strictly.
5. Non-regression: no target dataset may lose more than ``tolerance`` points on any
   promotion metric, and no metric defined for the champion may be undefined for the
   candidate.

:func:`decide` is pure (two evaluations + config -> :class:`Decision` with its table);
:func:`apply_decision` records it on the candidate version (tags + Markdown description),
moves ``challenger`` to the candidate and ``champion`` only when the decision says so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from entroad.config import PromotionConfig
from entroad.errors import PromotionError
from entroad.tracking import registry

log = logging.getLogger(__name__)

PROMOTE, REJECT, REEVALUATE = "promote", "reject", "reevaluate_champion"


TAG_REASON = "promotion.reason"
TAG_COMPARED_TO = "promotion.compared_to"  # "v<N>" or "none": the champion it was judged against

@dataclass(frozen=True)
class Evaluation:
    """One model's evaluation as the gate sees it (metrics in percent, None = undefined)."""

    label: str  # "v3", a run id...
    metrics: Mapping[str, Mapping[str, float | None]]  # dataset -> metric -> value
    data_versions: Mapping[str, str]
    in_domain: tuple[str, ...] = ()
    run_id: str | None = None
    version: str | None = None
    random_init: bool = False

    @property
    def targets(self) -> list[str]:
        return sorted(d for d in self.metrics if d not in self.in_domain)

    @classmethod
    def from_run_summary(cls, summary: Mapping[str, Any], label: str, version: str | None = None) -> Evaluation:
        """From :func:`entroad.tracking.runs.evaluation_of_run`."""
        return cls(
            label=label,
            metrics=summary["datasets"],
            data_versions=summary["data_versions"],
            in_domain=tuple(summary.get("in_domain", ())),
            run_id=summary.get("run_id"),
            version=version,
            random_init=bool(summary.get("random_init")),
        )


@dataclass
class Row:
    dataset: str
    metric: str
    candidate: float | None
    champion: float | None
    delta: float | None
    status: str  # ok | regression | missing | new | undefined


@dataclass
class Decision:
    outcome: str  # promote | reject | reevaluate_champion
    reasons: list[str]
    rows: list[Row] = field(default_factory=list)
    candidate: str | None = None
    champion: str | None = None  # label of the champion compared against (None: no champion)
    candidate_version: str | None = None
    champion_version: str | None = None
    candidate_mean: float | None = None
    champion_mean: float | None = None
    config: dict[str, Any] = field(default_factory=dict)
    mismatched_data: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    @property
    def promote(self) -> bool:
        return self.outcome == PROMOTE

    @property
    def first_champion(self) -> bool:
        return self.promote and self.champion is None

    @property
    def mean_delta(self) -> float | None:
        if self.candidate_mean is None or self.champion_mean is None:
            return None
        return self.candidate_mean - self.champion_mean

    @property
    def verdict(self) -> str:
        """One word for tags and tables: promoted | first_champion | rejected | needs_reevaluation."""
        if self.outcome == REEVALUATE:
            return "needs_reevaluation"
        if self.first_champion:
            return "first_champion"
        return "promoted" if self.promote else "rejected"

    def summary(self) -> str:
        return f"{self.verdict}: " + "; ".join(self.reasons)

    def table(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.rows]

    def to_markdown(self) -> str:
        c = self.config
        lines = [
            f"### Promotion decision: **{self.verdict}**",
            "",
            f"Candidate {self.candidate} vs champion {self.champion or '(none)'}. Rule: mean of "
            f"{', '.join(c.get('metrics', []))} over the target datasets must beat the champion by at least "
            f"{c.get('margin')} points; no dataset may lose more than {c.get('tolerance')} points; same data versions.",
            "",
            *[f"- {r}" for r in self.reasons],
        ]
        if self.rows:
            lines += ["", "| dataset | metric | candidate | champion | delta | status |", "|---|---|---|---|---|---|"]
            lines += [
                f"| {r.dataset} | {r.metric} | {_fmt(r.candidate)} | {_fmt(r.champion)} | {_fmt(r.delta, signed=True)} | {r.status} |"
                for r in self.rows
            ]
        if self.candidate_mean is not None:
            lines += ["", f"Mean: candidate {_fmt(self.candidate_mean)}, champion {_fmt(self.champion_mean)}, "
                      f"delta {_fmt(self.mean_delta, signed=True)}."]
        return "\n".join(lines) + "\n"


def _fmt(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "—"
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def _defined(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def decide(candidate: Evaluation | None, champion: Evaluation | None, cfg: PromotionConfig) -> Decision:
    """Apply the policy of the module docstring. Pure: no I/O."""
    config = {"metrics": list(cfg.metrics), "margin": cfg.margin, "tolerance": cfg.tolerance}
    base = {"config": config, "champion": champion.label if champion else None,
            "champion_version": champion.version if champion else None}
    if candidate is None or not candidate.metrics:
        return Decision(REJECT, ["the candidate has no finished evaluation"], **base)
    base.update(candidate=candidate.label, candidate_version=candidate.version)
    targets = candidate.targets
    if not targets:
        return Decision(REJECT, ["the candidate was evaluated on no target dataset (only its training domain)"], **base)
    missing = [m for m in cfg.metrics if not any(_defined(candidate.metrics[d].get(m)) for d in targets)]
    if missing:
        return Decision(REJECT, [f"promotion metric(s) {missing} are undefined on every target dataset of the candidate"], **base)
    cand_mean = _mean([_mean([candidate.metrics[d][m] for d in targets if _defined(candidate.metrics[d].get(m))])
                       for m in cfg.metrics])

    if champion is None:
        return Decision(PROMOTE, ["no champion yet: the first successfully evaluated model becomes champion"],
                        candidate_mean=cand_mean, **base)

    mismatched = {
        d: (candidate.data_versions.get(d), champion.data_versions.get(d))
        for d in targets
        if d not in champion.metrics or champion.data_versions.get(d) != candidate.data_versions.get(d)
    }
    if mismatched:
        detail = ", ".join(f"{d} (candidate {a}, champion {b or 'not evaluated'})" for d, (a, b) in sorted(mismatched.items()))
        return Decision(
            REEVALUATE,
            [f"not comparable: the champion was not evaluated on the same data versions: {detail}; "
             "re-evaluate the champion on this data first"],
            candidate_mean=cand_mean, mismatched_data=mismatched, **base,
        )

    rows: list[Row] = []
    reasons: list[str] = []
    per_metric_c: dict[str, list[float]] = {m: [] for m in cfg.metrics}
    per_metric_h: dict[str, list[float]] = {m: [] for m in cfg.metrics}
    for d in targets:
        for m in cfg.metrics:
            c, h = candidate.metrics[d].get(m), champion.metrics[d].get(m)
            if _defined(c) and _defined(h):
                delta = c - h
                status = "regression" if delta < -cfg.tolerance else "ok"
                per_metric_c[m].append(c)
                per_metric_h[m].append(h)
                if status == "regression":
                    reasons.append(f"{d} {m} regresses by {-delta:.2f} points (tolerance {cfg.tolerance})")
                rows.append(Row(d, m, c, h, delta, status))
            elif _defined(h):
                rows.append(Row(d, m, None, h, None, "missing"))
                reasons.append(f"{d} {m} is undefined for the candidate but defined for the champion")
            elif _defined(c):
                rows.append(Row(d, m, c, None, None, "new"))
            else:
                rows.append(Row(d, m, None, None, None, "undefined"))
    means_c = [x for m in cfg.metrics if (x := _mean(per_metric_c[m])) is not None]
    means_h = [x for m in cfg.metrics if (x := _mean(per_metric_h[m])) is not None]
    c_mean, h_mean = _mean(means_c), _mean(means_h)
    if c_mean is None or h_mean is None:
        reasons.append("no promotion metric is defined for both models on any target dataset")
        return Decision(REJECT, reasons, rows, **base)
    delta = c_mean - h_mean
    if delta < cfg.margin or delta <= 0:
        reasons.append(f"mean improvement {delta:+.2f} points is below the margin {cfg.margin}")
    if reasons:
        return Decision(REJECT, reasons, rows, candidate_mean=c_mean, champion_mean=h_mean, **base)
    return Decision(
        PROMOTE,
        [f"mean improves by {delta:+.2f} points (margin {cfg.margin}) and no dataset regresses beyond {cfg.tolerance}"],
        rows, candidate_mean=c_mean, champion_mean=h_mean, **base,
    )


def decision_tags(decision: Decision) -> dict[str, str]:
    tags = {
        registry.TAG_DECISION: decision.verdict,
        TAG_REASON: "; ".join(decision.reasons)[:4900],
        TAG_COMPARED_TO: f"v{decision.champion_version}" if decision.champion_version else "none",
        "promotion.decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "promotion.rule": (
            f"metrics={','.join(decision.config.get('metrics', []))} margin={decision.config.get('margin')} "
            f"tolerance={decision.config.get('tolerance')}"
        ),
    }
    if decision.mean_delta is not None:
        tags["promotion.mean_delta"] = f"{decision.mean_delta:.4f}"
    return tags


def apply_decision(client, name: str, decision: Decision) -> None:
    """Record ``decision`` on the candidate version and move the aliases it allows.

    Re-checks first that the champion is still the one the decision compared against (a
    concurrent promotion would otherwise be overwritten).
    """
    version = decision.candidate_version
    if version is None:
        raise PromotionError("the decision has no candidate version to record it on")
    current = registry.version_by_alias(client, name, registry.CHAMPION)
    current_v = str(current.version) if current is not None else None
    if current_v != decision.champion_version:
        raise PromotionError(
            f"the champion of {name!r} changed while deciding (now v{current_v}, decided against "
            f"v{decision.champion_version}); run the promotion again"
        )
    mv = registry.get_version(client, name, version)
    if mv.status != "READY":
        raise PromotionError(f"{name} v{version} is {mv.status}, not READY; it cannot be aliased")
    if decision.promote:
        # first: whoever may not move @champion (a trainer, a viewer) fails before anything is recorded
        registry.set_alias(client, name, registry.CHAMPION, version)
    registry.set_tags(client, name, version, decision_tags(decision))
    registry.describe(client, name, str(version), decision.to_markdown())
    registry.set_alias(client, name, registry.CHALLENGER, version)
    if decision.promote:
        log.info("%s v%s is now @champion (%s)", name, version, decision.summary())
    else:
        log.info("%s v%s stays @challenger (%s)", name, version, decision.summary())
