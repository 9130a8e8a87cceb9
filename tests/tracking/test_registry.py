"""Registry, aliases, the promotion gate on a real store, compare, and the pyfunc model."""

from __future__ import annotations

import pandas as pd
import pytest

from entroad.errors import PromotionError, TrackingError
from entroad.tracking import compare, registry, runs
from entroad.tracking import store as mlstore
from entroad.tracking.gate import register_candidate, run_gate
from tests.tracking.conftest import TARGETS, shifted

NAME = "entroad"


def candidate(params, trained, result, out=None):
    """Log a training run + its evaluation and register it; returns the version string."""
    train_id = runs.log_training_run(params, trained)
    eval_id = runs.log_evaluation_run(params, result, train_run_id=train_id, out_dir=out)
    mv, created = register_candidate(params, train_id, eval_id)
    assert created
    return str(mv.version)


def aliases(params):
    return registry.aliases_of(mlstore.client(params), NAME)


def test_pyfunc_champion_scores_images_by_path_and_bytes(store, params, trained, evaluated, data_root):
    import mlflow

    from entroad.tracking.pyfunc import encode_image

    result, out = evaluated
    v = candidate(params, trained, result, out)
    run_gate(params, v)
    assert aliases(params) == {"champion": v, "challenger": v}
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    images = sorted((data_root / "processed" / TARGETS[0] / "images").rglob("*.png"))[:2]
    frame = pd.DataFrame({"image": [str(images[0]), ""], "image_b64": ["", encode_image(images[1])]})
    scores = model.predict(frame)
    assert list(scores.columns) == ["score", "map_max", "map_mean", "map_area"]
    assert len(scores) == 2 and scores["score"].between(0, 1).all()
    mv = mlstore.client(params).get_model_version(NAME, v)
    assert mv.tags["random_init_backbone"] == "true" and mv.tags["promotion.decision"] == "first_champion"
    assert mv.tags[f"eval.data_version.{TARGETS[0]}"] == result.dataset(TARGETS[0]).data_version


def test_gate_promotes_better_rejects_worse_and_records_decisions(store, params, trained, evaluated, tmp_path):
    result, _ = evaluated
    client = mlstore.client(params)
    with pytest.raises(TrackingError, match="no versions yet"):
        run_gate(params)
    v1 = candidate(params, trained, result)
    assert run_gate(params, v1).champion_after == v1

    worse = candidate(params, trained, shifted(result, -5.0))
    dry = run_gate(params, worse, dry_run=True)
    assert dry.decision.verdict == "rejected" and not dry.applied
    assert client.get_model_version(NAME, worse).tags["promotion.decision"] == "pending"  # dry run records nothing
    res = run_gate(params, worse)
    assert res.champion_after == v1 and aliases(params) == {"champion": v1, "challenger": worse}
    mv = client.get_model_version(NAME, worse)
    assert mv.tags["promotion.decision"] == "rejected" and mv.tags["promotion.compared_to"] == f"v{v1}"
    assert "Promotion decision: **rejected**" in mv.description

    better = candidate(params, trained, shifted(result, +5.0))
    res = run_gate(params)  # default candidate: the newest version
    assert res.candidate_version == better and res.decision.verdict == "promoted"
    assert aliases(params) == {"champion": better, "challenger": better}
    assert float(client.get_model_version(NAME, better).tags["promotion.mean_delta"]) > 0.5

    again = run_gate(params, better)
    assert again.decision is None and "already is @champion" in again.message

    # compare: three versions side by side, terminal rows and Markdown
    cols = [compare.resolve(client, NAME, r) for r in (v1, f"v{worse}", "@champion")]
    md = compare.to_markdown(cols)
    assert "| dataset | metric | v1 | v2 | v3 |" in md
    assert f"| {TARGETS[0]} | image_auroc |" in md and "**" in md
    assert "first_champion" in md and "rejected" in md and "champion" in md
    with pytest.raises(TrackingError):
        compare.resolve(client, NAME, "v99")
    with pytest.raises(TrackingError, match="neither a version"):
        compare.resolve(client, NAME, "not-a-run")


def test_champion_on_other_data_is_not_compared_and_alias_stays(store, params, trained, evaluated):
    result, _ = evaluated
    v1 = candidate(params, trained, result)
    run_gate(params, v1)
    newer_data = shifted(result, +10.0, versions={TARGETS[0]: "content:new-data"})
    v2 = candidate(params, trained, newer_data)
    with pytest.raises(PromotionError, match="same data versions"):
        run_gate(params, v2)
    assert aliases(params) == {"champion": v1, "challenger": v2}
    mv = mlstore.client(params).get_model_version(NAME, v2)
    assert mv.tags["promotion.decision"] == "needs_reevaluation"


def test_only_finished_evaluations_are_registered(store, params, trained, evaluated):
    import mlflow

    result, _ = evaluated
    train_id = runs.log_training_run(params, trained)
    # an evaluation that crashed: its run is FAILED
    exp = mlstore.ensure_experiment(params)
    with pytest.raises(RuntimeError):
        with mlflow.start_run(experiment_id=exp, tags={"entroad.kind": "evaluate"}) as run:
            failed_id = run.info.run_id
            raise RuntimeError("evaluation crashed")
    with pytest.raises(TrackingError, match="not a finished evaluation run"):
        register_candidate(params, train_id, failed_id)
    with pytest.raises(TrackingError, match="not a finished evaluation run"):
        register_candidate(params, train_id, train_id)
    assert registry.versions(mlstore.client(params), NAME) == []
    assert aliases(params) == {}
    # registration is idempotent per training run
    eval_id = runs.log_evaluation_run(params, result, train_run_id=train_id)
    mv1, created1 = register_candidate(params, train_id, eval_id)
    mv2, created2 = register_candidate(params, train_id, eval_id)
    assert created1 and not created2 and mv1.version == mv2.version
