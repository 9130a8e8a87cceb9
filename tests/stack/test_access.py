"""The permission matrix of the shared registry, walked with each identity against the real
MLflow server (basic-auth, PostgreSQL user store): who may log, register and move aliases."""

from __future__ import annotations

import pytest
import requests

from entroad.stack import access

CHAMPION, CHALLENGER = "champion", "challenger"

def _log_model(client, experiment_id: str) -> tuple[str, str]:
    import mlflow
    import pandas as pd
    from mlflow.pyfunc import PythonModel

    class Model(PythonModel):
        def predict(self, context, model_input):
            return [0.5] * len(model_input)

    run = client.create_run(experiment_id, run_name="stack-test")
    with mlflow.start_run(run_id=run.info.run_id):
        info = mlflow.pyfunc.log_model(name="model", python_model=Model(), input_example=pd.DataFrame({"x": [1.0]}),
                                       pip_requirements=[])
    client.set_terminated(run.info.run_id)
    return run.info.run_id, info.model_uri

def _denied(fn, *args, **kwargs) -> str:
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as e:
        fn(*args, **kwargs)
    # copy_model_version re-wraps the server's answer: its code then only shows in the text
    text = f"{e.value.error_code} {e.value}"
    assert "PERMISSION_DENIED" in text or "error code 403" in text, e.value
    return str(e.value)

def test_admin_password_replaced_and_users_authenticate(stack):
    url = stack.mlflow_url + "/api/2.0/mlflow/experiments/search?max_results=1"
    assert requests.get(url, auth=("admin", "password1234"), timeout=10).status_code == 401
    assert requests.get(url, timeout=10).status_code == 401
    for user in ("admin", *access.IDENTITIES):
        assert requests.get(url, auth=(user, stack.secret(user)), timeout=10).status_code == 200, user
    assert requests.get(url, auth=("trainer", stack.secret("viewer")), timeout=10).status_code == 401

def test_permission_matrix(stack, as_user):
    # models of its own (created by the admin): its dummy champion must not meet other tests' models
    prod = "access-matrix"
    cand = access.candidates_model(prod)
    access.create_registry(stack.mlflow_url, stack.secret("admin"), stack.experiment, prod)

    trainer = as_user(access.TRAINER)
    exp_id = trainer.get_experiment_by_name(stack.experiment).experiment_id
    run_id, model_uri = _log_model(trainer, exp_id)
    v = trainer.create_model_version(cand, model_uri, run_id=run_id, model_id=model_uri.removeprefix("models:/"))
    trainer.set_registered_model_alias(cand, CHALLENGER, v.version)  # trainers own the candidates
    _denied(trainer.create_model_version, prod, model_uri, run_id=run_id)
    _denied(trainer.copy_model_version, f"models:/{cand}/{v.version}", prod)

    promoter = as_user(access.PROMOTER)
    copy = promoter.copy_model_version(f"models:/{cand}/{v.version}", prod)
    assert copy.run_id == run_id  # lineage travels with the copy
    promoter.set_registered_model_alias(prod, CHAMPION, copy.version)

    trainer = as_user(access.TRAINER)
    run2, uri2 = _log_model(trainer, exp_id)
    v2 = trainer.create_model_version(cand, uri2, run_id=run2, model_id=uri2.removeprefix("models:/"))
    _denied(trainer.set_registered_model_alias, prod, CHAMPION, copy.version)
    _denied(trainer.delete_registered_model_alias, prod, CHAMPION)
    _denied(trainer.update_registered_model, prod, description="mine now")

    viewer = as_user(access.VIEWER)
    assert viewer.get_model_version_by_alias(prod, CHAMPION).version == copy.version  # reading is allowed
    assert viewer.get_run(run_id).info.status == "FINISHED"
    _denied(viewer.create_run, exp_id)
    _denied(viewer.create_model_version, cand, uri2, run_id=run2)
    _denied(viewer.set_registered_model_alias, cand, CHALLENGER, v2.version)
    _denied(viewer.set_registered_model_alias, prod, CHAMPION, copy.version)
    _denied(viewer.copy_model_version, f"models:/{cand}/{v2.version}", prod)

    admin_view = as_user(access.PROMOTER)
    assert admin_view.get_model_version_by_alias(prod, CHAMPION).version == copy.version  # did not move
    assert [m.version for m in admin_view.search_model_versions(f"name = '{prod}'")] == [copy.version]
