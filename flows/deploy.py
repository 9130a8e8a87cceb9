"""Scheduled retraining: serve ``entroad-retrain`` as a deployment on the cron of params.yaml.

    prefect server start                                             # terminal 1 (the UI too)
    prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api     # once
    python -m flows serve                                            # terminal 2, repository root

Runs fire only while both processes run (the server schedules them, the serve process
executes them); each run shows up in the Prefect UI under Deployments -> entroad-retrain ->
<schedule.deployment>, and under Flow Runs. "Quick run" in the UI starts one at once.
"""

from __future__ import annotations

from pathlib import Path

from entroad.errors import ConfigError
from flows.common import DEFAULT_PARAMS, read_params

FLOW_NAME = "entroad-retrain"
NO_SERVER = (
    "scheduled runs need a Prefect server: run `prefect server start` in another terminal, then "
    "`prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`, and start `python -m flows serve` again"
)


def api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def retrain_deployment(params_path: str = DEFAULT_PARAMS, overrides: list[str] | None = None):
    """The ``entroad-retrain`` deployment on ``schedule.cron`` (a RunnerDeployment to serve)."""
    from prefect.schedules import Cron

    from flows.retrain import retrain_flow

    params = read_params(params_path, overrides)
    s = params.schedule
    return retrain_flow.to_deployment(
        name=s.deployment,
        schedules=[Cron(s.cron, timezone=s.timezone)],
        parameters={"params_path": str(Path(params_path).resolve()), "overrides": list(overrides or [])},
        tags=["entroad", "retrain"],
        description="EntroAD scheduled retraining: ingest -> train -> evaluate -> register -> promotion gate",
    )


def serve_retrain(params_path: str = DEFAULT_PARAMS, overrides: list[str] | None = None) -> None:
    """Start the long-running process that executes scheduled retrain runs (run it from the
    repository root: params.yaml, datasets/, runs/ and mlflow/ are relative to it)."""
    from prefect import serve

    if not api_url():
        raise ConfigError(NO_SERVER)
    deployment = retrain_deployment(params_path, overrides)
    s = read_params(params_path, overrides).schedule
    print(f"serving {FLOW_NAME}/{s.deployment}: cron {s.cron!r} ({s.timezone}); runs fire only while this "
          "process and the Prefect server run. Ctrl-C stops it.")
    print(f"Prefect UI: {api_url().removesuffix('/api')}/deployments")
    serve(deployment, pause_on_shutdown=False)
