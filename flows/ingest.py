"""Flow ``entroad-ingest``: raw data -> DVC-versioned processed datasets.

Each dataset goes through its DVC stage (``dvc repro ingest@<name>``), one at a time (DVC
holds a repository lock); DVC skips datasets whose raw data, settings and ingestion code did
not change. The processed data is then pushed to the DVC remote. ``dask`` (default:
``orchestration.dask_address``) spreads the DICOM series of a dataset over Dask workers.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows import tasks
from flows.common import DEFAULT_PARAMS, publish_table, read_params, run_logger


def datasets_for_retrain(params) -> list[str]:
    """The training dataset and the evaluation targets (what a retrain needs), in order."""
    names = [params.train.dataset, *params.evaluation.targets]
    return list(dict.fromkeys(names))


@flow(name="entroad-ingest", log_prints=True)
def ingest_flow(
    params_path: str = DEFAULT_PARAMS,
    overrides: list[str] | None = None,
    datasets: list[str] | None = None,
    force: bool = False,
    push: bool = True,
    dask: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Ingest ``datasets`` (default: the training dataset + evaluation targets); returns
    ``{name: {"version", "skipped", "path", ...}}``."""
    log = run_logger()
    params = read_params(params_path, overrides)
    names = list(datasets or datasets_for_retrain(params))
    made = tasks.make_sample_data(params)
    if made:
        log.info("wrote raw sample data: %s", ", ".join(made))
    results: dict[str, dict[str, Any]] = {}
    for name in names:  # sequential on purpose: one DVC command at a time
        results[name] = tasks.ingest_dataset(params, name, force=force, dask=dask or params.orchestration.dask_address)
        r = results[name]
        log.info("%s: %s (%s)", name, "unchanged, skipped" if r["skipped"] else f"ingested in {r['seconds']} s", r["version"])
    if push:
        try:
            log.info("DVC remote: %s", tasks.push_data(params, names))
        except Exception as e:  # the data is versioned locally; a remote outage must not stop training
            log.warning("DVC push failed after retries (%s); the data stays versioned locally, push later "
                        "with `entroad data push`", e)
    publish_table(
        "entroad-ingest",
        [{"dataset": n, "version": r["version"], "skipped": r["skipped"], "seconds": r["seconds"]} for n, r in results.items()],
        "Datasets ingested by this run (skipped = unchanged since the last ingest)",
    )
    return results
