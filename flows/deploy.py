"""Deployments: serve ``entroad-retrain`` from this process, or register every flow with a
work pool for the team's workers.

One machine (``python -m flows serve``)::

    prefect server start                                             # terminal 1 (the UI too)
    prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api     # once
    python -m flows serve                                            # terminal 2, repository root

Runs fire only while both processes run (the server schedules them, the serve process
executes them); each run shows up in the Prefect UI under Deployments -> entroad-retrain ->
<schedule.deployment>, and under Flow Runs. "Quick run" in the UI starts one at once.

A team (``python -m flows.deploy --pool NAME``, :func:`deploy_all`): the ingest, retrain (on
``schedule.cron``) and evaluate deployments are registered on the Prefect server with a
process work pool; any ``prefect worker start --pool NAME`` picks their runs up, on this
machine or another. Code comes from this checkout (runs start in it, so its params.yaml,
datasets/ and DVC repository are used) or from a git URL (``--source``; each run clones it).
No Docker image is built.
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


DEPLOYED_FLOWS = {
    # flow name -> entrypoint (relative to the source) and what it is for
    "entroad-ingest": ("flows/ingest.py:ingest_flow", "ingest the configured datasets through their DVC stages"),
    "entroad-retrain": ("flows/retrain.py:retrain_flow",
                        "ingest -> train -> evaluate -> register -> promotion gate (scheduled)"),
    "entroad-evaluate": ("flows/evaluate.py:evaluate_flow", "cross-domain evaluation of a model (parameter: model)"),
}


def check_server(url: str, timeout: float = 5.0) -> None:
    """One short probe, so an unreachable server is a clear error instead of the client's retries."""
    import httpx

    try:
        httpx.get(url.rstrip("/") + "/health", timeout=timeout).raise_for_status()
    except httpx.HTTPError as e:
        raise ConfigError(
            f"Prefect server {url} (from PREFECT_API_URL) is unreachable: {type(e).__name__}. Start it "
            "(`make stack`, or `prefect server start`) or fix PREFECT_API_URL"
        ) from None


def _is_remote(source: str) -> bool:
    return "://" in source or source.startswith("git@")


def deploy_all(pool: str, params_path: str = DEFAULT_PARAMS, overrides: list[str] | None = None,
               source: str | None = None, cron: str | None = None) -> list[str]:
    """Register the three deployments with work pool ``pool``; returns ``flow/deployment`` names.

    ``source``: a folder (default: the current directory, the repository root) or a git URL.
    ``cron`` overrides ``schedule.cron`` for the retrain deployment. Needs ``PREFECT_API_URL``.
    """
    from prefect import flow
    from prefect.schedules import Cron

    if not api_url():
        raise ConfigError("deployments live on a Prefect server: set PREFECT_API_URL (e.g. from `make stack`) first")
    check_server(api_url())
    params = read_params(params_path, overrides)
    src = source or str(Path.cwd().resolve())
    # a local checkout is also where runs start, so the params file may be named absolutely;
    # a git clone lands in a fresh folder, where only the relative name means anything
    params_ref = params_path if _is_remote(src) else str(Path(params_path).resolve())
    s = params.schedule
    names = []
    for flow_name, (entrypoint, what) in DEPLOYED_FLOWS.items():
        deployment = s.deployment if flow_name == FLOW_NAME else flow_name
        base = {"params_path": params_ref, "overrides": list(overrides or [])}
        schedules = [Cron(cron or s.cron, timezone=s.timezone)] if flow_name == FLOW_NAME else None
        loaded = flow.from_source(source=src, entrypoint=entrypoint)
        loaded.deploy(name=deployment, work_pool_name=pool, parameters=base, schedules=schedules,
                      tags=["entroad"], description=f"EntroAD: {what}", build=False, push=False,
                      print_next_steps=False)
        names.append(f"{flow_name}/{deployment}")
    return names


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


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.deploy --pool NAME [--source DIR|GIT_URL] [--cron EXPR]``."""
    import argparse
    import sys

    from entroad.errors import EntroADError

    ap = argparse.ArgumentParser(prog="python -m flows.deploy", description=deploy_all.__doc__)
    ap.add_argument("--pool", required=True, help="Prefect work pool of type process (make stack creates 'entroad')")
    ap.add_argument("--params", default=DEFAULT_PARAMS)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--source", default=None, help="checkout folder (default: here) or git URL")
    ap.add_argument("--cron", default=None, help="retrain schedule (default: schedule.cron of params.yaml)")
    a = ap.parse_args(argv)
    try:
        names = deploy_all(a.pool, a.params, a.overrides, a.source, a.cron)
    except EntroADError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    for n in names:
        print(f"deployed {n} -> work pool {a.pool!r}")
    print(f"start workers with: prefect worker start --pool {a.pool}   (from the repository root)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
