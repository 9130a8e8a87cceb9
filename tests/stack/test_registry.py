"""The pipeline's registry commands against the shared server: trainers register candidates,
only the promoter moves ``@champion``, and ``compare``/``promote``/``models`` keep working
across the two-model registry. No password ever shows up in what the project writes."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from entroad.cli import app
from entroad.errors import TrackingError
from entroad.stack import access
from entroad.tracking import registry, runs
from entroad.tracking.gate import register_candidate, run_gate
from tests.stack.conftest import planted_passwords
from tests.tracking.conftest import TARGETS, data_root, evaluated, params, params_for, shifted, trained  # noqa: F401

runner = CliRunner()


def _candidate(p, trained, result, out=None) -> str:  # noqa: F811
    train_id = runs.log_training_run(p, trained)
    eval_id = runs.log_evaluation_run(p, result, train_run_id=train_id, out_dir=out)
    mv, created = register_candidate(p, train_id, eval_id)
    assert created and mv.name == access.candidates_model(p.tracking.registered_model)
    return str(mv.version)


def test_roles_across_the_two_model_registry(stack, as_user, data_root, trained, evaluated, tmp_path, monkeypatch):  # noqa: F811
    # a registry of its own (the admin creates both models), so no other test's champion interferes
    team = params_for(data_root, **{"tracking.registered_model": "cli-model"})
    access.create_registry(stack.mlflow_url, stack.secret("admin"), stack.experiment, team.tracking.registered_model)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(team.resolved()))
    name = team.tracking.registered_model
    result, out = evaluated
    outputs: list[str] = []

    as_user(access.VIEWER)
    with pytest.raises(TrackingError, match="viewer"):
        runs.log_training_run(team, trained)

    trainer = as_user(access.TRAINER)
    v1 = _candidate(team, trained, result, out)
    with pytest.raises(TrackingError) as denied:
        run_gate(team, v1)  # would be the first champion: the trainer may not set it
    assert "'trainer' may not promote" in str(denied.value) and "promoter" in str(denied.value)
    assert registry.version_by_alias(trainer, name, registry.CHAMPION) is None
    assert registry.get_version(trainer, name, v1).tags[registry.TAG_DECISION] == "pending"  # nothing recorded

    promoter = as_user(access.PROMOTER)
    r = runner.invoke(app, ["promote", "--version", v1], env={"COLUMNS": "200"})
    outputs.append(r.output)
    assert r.exit_code == 0 and f"v{v1} is now {name}@champion" in r.output, r.output
    prod = promoter.get_model_version_by_alias(name, registry.CHAMPION)
    assert prod.source == f"models:/{access.candidates_model(name)}/{v1}" and prod.run_id == registry.get_version(
        promoter, name, v1).run_id

    as_user(access.TRAINER)
    v2 = _candidate(team, trained, shifted(result, +3.0))
    with pytest.raises(TrackingError, match="only the promoter"):
        registry.set_alias(trainer, name, registry.CHAMPION, v2)

    as_user(access.VIEWER)
    r = runner.invoke(app, ["promote", "--version", v2], env={"COLUMNS": "200"})
    outputs.append(r.output)
    assert r.exit_code != 0 and "'viewer' may not" in str(r.exception or r.output)
    assert registry.aliases_of(trainer, name)["champion"] == v1  # neither trainer nor viewer moved it

    as_user(access.PROMOTER)
    r = runner.invoke(app, ["promote"], env={"COLUMNS": "200"})  # the newest undecided candidate: v2
    outputs.append(r.output)
    assert r.exit_code == 0 and f"v{v2} is now {name}@champion" in r.output, r.output

    as_user(access.VIEWER)  # reading is everyone's: compare and models as the viewer
    r = runner.invoke(app, ["compare", v1, "@champion", "--markdown", str(tmp_path / "cmp.md")], env={"COLUMNS": "200"})
    outputs.append(r.output)
    assert r.exit_code == 0 and TARGETS[0] in r.output and "image_auroc" in r.output, r.output
    r = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    outputs.append(r.output)
    assert r.exit_code == 0 and "first_champion" in r.output and "promoted" in r.output, r.output
    assert registry.aliases_of(trainer, name) == {"champion": v2, "challenger": v2}

    import mlflow
    import pandas as pd

    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")  # artifacts through the server from S3
    images = sorted((result_root(team) / TARGETS[0] / "images").rglob("*.png"))[:1]
    scores = model.predict(pd.DataFrame({"image": [str(images[0])], "image_b64": [""]}))
    assert 0.0 <= float(scores["score"][0]) <= 1.0

    outputs.append((tmp_path / "cmp.md").read_text())
    outputs.extend(_everything_logged(promoter, stack))
    outputs.extend(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file() and p.suffix in {".html", ".md", ".json", ".csv"})
    outputs.extend(p.read_text(errors="replace") for p in (stack.path / "logs").glob("*.log"))
    blob = "\n".join(outputs)
    leaked = [i for i, pw in enumerate(planted_passwords(stack)) if pw in blob]
    assert not leaked, f"a planted password shows up in the outputs (secret #{leaked})"


def result_root(p):
    from pathlib import Path

    return Path(p.data.root) / "processed"


def _everything_logged(client, stack) -> list[str]:
    """Params, tags and descriptions of every run and model version on the server."""
    texts = []
    exps = client.search_experiments()
    for run in client.search_runs([e.experiment_id for e in exps], max_results=500):
        texts.extend(f"{k}={v}" for k, v in {**run.data.params, **run.data.tags}.items())
    for model in (stack.registered_model, access.candidates_model(stack.registered_model)):
        for mv in client.search_model_versions(f"name = '{model}'"):
            texts.append(mv.description or "")
            texts.extend(f"{k}={v}" for k, v in mv.tags.items())
    return texts
