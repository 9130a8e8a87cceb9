"""Prefect flows of EntroAD-Pipeline: ingest -> train -> cross-domain evaluate -> register -> promote.

Every task is a thin wrapper around an ``entroad`` function; the library itself never imports
Prefect. Run ``python -m flows --help`` for the entry points (``quickstart``, ``retrain``,
``ingest``, ``train``, ``evaluate``, ``serve``).
"""

import os

# Library log records (entroad.*) also go to the Prefect run logs / UI.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "entroad")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# Offline sites: the temporary server's telemetry would log an ERROR for every run.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# MLflow's per-file artifact bars interleave with the run logs.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# entroad log records emitted outside a flow run (e.g. in a Dask worker) stay local.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
