"""Real MLflow sqlite stores for tests, without paying the ~3 s of migrations each time.

One store is created (migrated) per session; every test gets a copy of its file.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def migrated_db(folder: Path) -> Path:
    """Create an empty, fully migrated MLflow sqlite database in ``folder``."""
    from mlflow import MlflowClient

    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}", registry_uri=f"sqlite:///{db}").search_experiments()
    return db


def install_store(template: Path, root: Path) -> Path:
    """Copy the migrated database to ``<root>/mlflow/mlflow.db`` (the embedded store of ``root``)."""
    dest = root / "mlflow" / "mlflow.db"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(template, dest)
    return dest


def clear_tracking_env(monkeypatch) -> None:
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
