"""The promotion policy (pure): margin, tolerance, no champion yet, different data versions."""

from __future__ import annotations

import pytest

from entroad.config import PromotionConfig
from entroad.tracking.promotion import PROMOTE, REEVALUATE, REJECT, Evaluation, decide

CFG = PromotionConfig(metrics=["image_auroc", "pixel_auroc"], margin=0.5, tolerance=1.0)
DATA = {"a": "v-a", "b": "v-b", "train": "v-t"}


def ev(label, a, b, versions=DATA, in_domain=("train",), **extra) -> Evaluation:
    metrics = {"a": {"image_auroc": a[0], "pixel_auroc": a[1]}, "b": {"image_auroc": b[0], "pixel_auroc": b[1]},
               "train": {"image_auroc": 99.0, "pixel_auroc": 99.0}, **extra}
    return Evaluation(label=label, metrics=metrics, data_versions=versions, in_domain=in_domain, version=label[1:])


CHAMP = ev("v1", (70.0, 80.0), (60.0, 70.0))


def test_first_model_becomes_champion():
    d = decide(ev("v1", (50, 50), (50, 50)), None, CFG)
    assert d.outcome == PROMOTE and d.first_champion and d.verdict == "first_champion"


def test_better_by_more_than_margin_is_promoted():
    d = decide(ev("v2", (71.0, 81.0), (61.0, 71.0)), CHAMP, CFG)  # +1.0 everywhere
    assert d.outcome == PROMOTE and d.verdict == "promoted"
    assert d.mean_delta == pytest.approx(1.0)
    assert all(r.status == "ok" for r in d.rows) and {r.dataset for r in d.rows} == {"a", "b"}  # not the training domain


def test_improvement_below_margin_is_rejected():
    d = decide(ev("v2", (70.4, 80.4), (60.4, 70.4)), CHAMP, CFG)
    assert d.outcome == REJECT and "below the margin" in d.reasons[-1]


def test_equal_is_rejected_even_with_zero_margin():
    d = decide(CHAMP, CHAMP, PromotionConfig(metrics=CFG.metrics, margin=0.0, tolerance=1.0))
    assert d.outcome == REJECT


def test_regression_beyond_tolerance_blocks_a_better_mean():
    # mean +4.25, but dataset b loses 1.5 points of image AUROC (tolerance 1.0)
    d = decide(ev("v2", (80.0, 90.0), (58.5, 70.0)), CHAMP, CFG)
    assert d.outcome == REJECT
    assert any("b image_auroc regresses by 1.50" in r for r in d.reasons)
    assert [r.status for r in d.rows if r.dataset == "b" and r.metric == "image_auroc"] == ["regression"]


def test_regression_within_tolerance_is_allowed():
    d = decide(ev("v2", (80.0, 90.0), (59.5, 70.0)), CHAMP, CFG)
    assert d.outcome == PROMOTE


def test_different_data_versions_are_never_compared():
    d = decide(ev("v2", (99, 99), (99, 99), versions={**DATA, "b": "v-b2"}), CHAMP, CFG)
    assert d.outcome == REEVALUATE and d.verdict == "needs_reevaluation"
    assert d.mismatched_data == {"b": ("v-b2", "v-b")}


def test_target_missing_from_champion_needs_reevaluation():
    cand = ev("v2", (99, 99), (99, 99), c={"image_auroc": 50.0, "pixel_auroc": 50.0}, versions={**DATA, "c": "v-c"})
    assert decide(cand, CHAMP, CFG).outcome == REEVALUATE


def test_undefined_metric_for_candidate_only_is_a_regression():
    cand = ev("v2", (99.0, None), (99.0, 99.0))
    d = decide(cand, CHAMP, CFG)
    assert d.outcome == REJECT and any("undefined for the candidate" in r for r in d.reasons)


def test_candidate_without_any_promotion_metric_is_rejected():
    cand = ev("v2", (None, 80.0), (None, 70.0))
    assert decide(cand, None, CFG).outcome == REJECT
    assert decide(None, CHAMP, CFG).outcome == REJECT


def test_decision_markdown_has_rule_table_and_verdict():
    d = decide(ev("v2", (80.0, 90.0), (58.5, 70.0)), CHAMP, CFG)
    md = d.to_markdown()
    assert "Promotion decision: **rejected**" in md
    assert "at least 0.5 points" in md and "| b | image_auroc | 58.50 | 60.00 | -1.50 | regression |" in md
