"""README "Using it on your data", end to end as a user types it: a folder dataset of one's
own, ingested, the champion and a newly trained model evaluated on it with ``--track``, then
``compare`` and ``promote`` deciding on that data. Real CLI processes, a real MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from entroad.data.synthetic import write_processed_dataset
from entroad.tracking import registry
from entroad.tracking import store as mlstore
from entroad.tracking.gate import run_gate
from tests.data.ingest_helpers import mask, rgb, save
from tests.tracking.conftest import IMAGE_PX, params_for
from tests.tracking.test_registry import candidate

SITE = "my-line"


def entroad(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING") and k != "MLFLOW_REGISTRY_URI"}
    env.update({"COLUMNS": "80", "HF_HUB_OFFLINE": "1", "MLFLOW_ENABLE_ASYNC_LOGGING": "false"})
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "entroad.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=240)
    print(f"{time.perf_counter() - t0:5.1f}s entroad {' '.join(args)}\n{proc.stdout}")
    assert proc.returncode == 0, f"entroad {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def write_site_folder(src: Path) -> None:
    """4 normal images, 2 + 2 anomalous in two defect folders, a mask for each anomalous one."""
    for i in range(4):
        save(rgb(seed=i), src / "ok" / f"n{i}.png")
    for j, defect in enumerate(("scratch", "dent")):
        for k in range(2):
            stem = f"{defect}{k}"
            save(rgb(seed=10 + 2 * j + k), src / defect / f"{stem}.png")
            save(mask(box=(2 + k, 3, 9, 12 + j)), src / "masks" / defect / f"{stem}.png")


def test_own_data_to_compare_and_promote(store, params, trained, evaluated):
    # The state the quickstart leaves: a registered, evaluated champion.
    result, _ = evaluated
    v1 = candidate(params, trained, result)
    run_gate(params, v1)
    # The project: the auxiliary training data, and params.yaml describing the site's folder.
    root = store / "datasets"
    write_processed_dataset(root / "processed", "aux", ["stripes", "dots"], 2, 2, IMAGE_PX, seed=0)
    write_site_folder(root / "raw" / SITE)
    cfg = params_for(root).resolved()
    cfg["data"]["root"] = "datasets"
    cfg["data"]["datasets"] = {SITE: {"format": "folder", "source": f"datasets/raw/{SITE}", "domain": "industrial",
                                      "options": {"normal": "ok", "anomalous": ["scratch", "dent"], "masks": "masks"}}}
    (store / "params.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    out = entroad(store, "ingest", SITE).stdout
    assert SITE in out
    out = entroad(store, "evaluate", "--model", "models:/entroad@champion", "--data", SITE, "--track").stdout
    assert f"linked to entroad v{v1} (@champion)" in " ".join(out.split())
    entroad(store, "train", "--out", "runs/exp1")
    proc = entroad(store, "evaluate", "--model", "runs/exp1/model", "--data", SITE, "--track")
    out = " ".join(proc.stdout.split())
    assert "registered as entroad v2" in out and "entroad promote --version 2 --dry-run" in out
    assert (proc.stdout + proc.stderr).count("RANDOM-INIT") == 1  # one notice per command

    out = entroad(store, "compare", "@champion", "latest", "--markdown", "cmp.md").stdout
    assert SITE in out and "image_auroc" in out and "(none)" not in out
    assert max(len(line) for line in out.splitlines()) <= 80  # COLUMNS=80: folded, not cut
    md = (store / "cmp.md").read_text()
    assert f"| {SITE} | image_auroc |" in md and "| entroad-tiny (random init) | entroad-tiny (random init) |" in md
    out = " ".join(entroad(store, "promote", "--dry-run").stdout.split())
    assert f"v2 vs v{v1}" in out and SITE in out and "dry run" in out
    assert "tgt-industrial" not in out  # judged on the site's data, not on the champion's old targets
    out = " ".join(entroad(store, "promote").stdout.split())
    assert "is now entroad@champion" in out or "not promoted" in out
    decided = registry.get_version(mlstore.client(params), "entroad", "2").tags[registry.TAG_DECISION]
    assert decided in {"promoted", "rejected"}
    out = entroad(store, "models").stdout
    assert decided in out and max(len(line) for line in out.splitlines()) <= 80
    out = entroad(store, "inspect", "models:/entroad@champion").stdout  # the form its own errors suggest
    assert "entroad-tiny" in out and "learnable" in out
