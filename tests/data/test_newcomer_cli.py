"""A newcomer's own folder of images through the real `entroad` command: nothing dropped
silently, errors that name the next command, one format shown on request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.data.ingest_helpers import mask, rgb, save

BIN = str(Path(sys.executable).parent / "entroad")


def entroad(cwd: Path, *args: str, ok: bool = True, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(columns), "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run([BIN, *args], cwd=cwd, capture_output=True, text=True, env=env)
    if ok:
        assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def my_line(src: Path) -> Path:
    """3 normal images, 2 scratches (one with a mask), 2 dents without masks, one stray mask."""
    for i in range(3):
        save(rgb(seed=i), src / f"ok/n{i}.png")
    for i in range(2):
        save(rgb(seed=10 + i), src / f"scratch/s{i}.png")
        save(rgb(seed=20 + i), src / f"dent/d{i}.png")
    save(mask(), src / "masks/s0_mask.png")
    save(mask(), src / "masks/gone_mask.png")  # its image was deleted
    return src


PARAMS = """data:
  root: store
  datasets:
    my-line: {format: folder, source: raw/my-line, domain: industrial, options: {normal: ok}}
"""


def test_folder_keeps_maskless_anomalies_and_says_what_it_skipped(tmp_path):
    (tmp_path / "params.yaml").write_text(PARAMS)
    my_line(tmp_path / "raw/my-line")
    out = entroad(tmp_path, "ingest", "my-line", "--no-dvc").stdout
    manifest = [json.loads(x) for x in (tmp_path / "store/processed/my-line/manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 7 and sum(r["label"] for r in manifest) == 4
    assert sum(r["mask"] is None and r["label"] == 1 for r in manifest) == 3
    flat = " ".join(out.split())  # log lines wrap at the terminal width
    assert "my-line: kept 3 anomalous image(s) without a mask" in flat
    assert "left out of pixel metrics" in flat and "missing_masks: skip" in flat
    assert "my-line: skipped 1: mask without image (1)" in flat
    assert "store/processed/my-line/audit.json" in flat

    # Dropping them is a choice, and the terminal says how to undo it.
    out = entroad(tmp_path, "ingest", "my-line", "--no-dvc", "--set",
                  "data.datasets.my-line.options.missing_masks=skip").stdout
    flat = " ".join(out.split())
    assert "skipped 4: anomalous image without its mask (3)" in flat
    assert "set `missing_masks: keep` under data.datasets.my-line.options in params.yaml" in flat
    audit = json.loads((tmp_path / "store/processed/my-line/audit.json").read_text())
    reasons = {s["reason"] for s in audit["skipped_files"]}
    assert "anomalous image without its mask (dropped by missing_masks: skip)" in reasons
    assert not any("missing_masks: keep)" in r for r in reasons)


def test_data_tables_fit_80_columns_without_cutting_versions(tmp_path):
    (tmp_path / "params.yaml").write_text(PARAMS)
    my_line(tmp_path / "raw/my-line")
    shown = [entroad(tmp_path, "ingest", "my-line", "--no-dvc", columns=80).stdout]
    version = json.loads(entroad(tmp_path, "data", "list", "--json").stdout)[0]["version"]
    shown += [entroad(tmp_path, "data", cmd, columns=80).stdout for cmd in ("list", "status")]
    for out in shown:
        lines = out.splitlines()
        head = next(i for i, line in enumerate(lines) if "version" in line and ("name" in line or "dataset" in line))
        table = lines[head:]
        assert "…" not in out  # wrapped, never cut
        assert max(len(line) for line in table) <= 80
        # the version, read down its column (under the header's rule), is whole
        col = table[0].index("version")
        assert version in "".join(line[col:].split(" ")[0] for line in table[2:]), (version, out)


def test_adhoc_ingest_json_carries_the_notes(tmp_path):
    (tmp_path / "params.yaml").write_text("data: {root: store}\n")
    src = my_line(tmp_path / "raw")
    out = entroad(tmp_path, "ingest", "line7", "--format", "folder", "--source", str(src), "--normal", "ok",
                  "-o", "missing_masks=skip", "--json").stdout
    row = json.loads(out)[0]  # stdout stays pure JSON
    assert row["skipped_by_reason"] == {"anomalous image without its mask": 3, "mask without image": 1}
    assert any("add `-o missing_masks=keep` to the command" in n for n in row["notes"])


@pytest.mark.parametrize("fmt", ["folder", "dicom"])
def test_data_formats_name_shows_one_format(tmp_path, fmt):
    out = entroad(tmp_path, "data", "formats", fmt).stdout
    assert fmt in out and "option" in out.lower()
    other = "mvtec"
    assert other not in out.split()


def test_data_formats_unknown_name_suggests(tmp_path):
    proc = entroad(tmp_path, "data", "formats", "foldr", ok=False)
    assert proc.returncode == 2 and "(did you mean 'folder'?)" in proc.stderr


SAMPLES = """data:
  root: store
  datasets:
    my-line: {format: folder, source: raw/my-line, options: {normal: ok}}
    textures: {format: mvtec, source: raw/textures,
               generate: {kind: textures-mvtec, families: [stripes], n_train_good: 1, n_test_good: 2,
                          n_test_per_defect: 1, size: 32, seed: 0}}
train: {dataset: textures}
evaluation:
  targets: [my-line]
  suites: {site: {train: textures, targets: [my-line, textures, visa]}}
"""


def test_dataset_errors_name_the_next_command(tmp_path):
    (tmp_path / "params.yaml").write_text(SAMPLES)
    # did-you-mean for a dataset name: a typo is not "add a dataset"
    err = entroad(tmp_path, "ingest", "my_line", ok=False).stderr
    assert "(did you mean 'my-line'?)" in err and "Traceback" not in err
    err = entroad(tmp_path, "data", "export-meta", "my_line", ok=False).stderr
    assert "no dataset named 'my_line' (did you mean 'my-line'?)" in err
    # not configured: how to add it; not ingested: the exact command for THAT dataset
    err = entroad(tmp_path, "evaluate", "-m", "none", "--data", "my_line,plant9,my-line", ok=False).stderr
    assert "not configured in params.yaml: my_line, plant9\n  'my_line' (did you mean 'my-line'?)" in err
    assert "plant9" in err and "{format: folder, source: datasets/raw/my_line}" in err
    assert "not ingested yet: my-line" in err and "raw/my-line does not exist" in err
    assert "Run: `entroad ingest my-line`" in err and "data samples" not in err
    # a suite lists every missing dataset, and one command fixes the configured ones
    err = entroad(tmp_path, "evaluate", "-m", "none", "--suite", "site", ok=False).stderr
    assert "suite 'site': not configured in params.yaml: visa" in err
    assert "not ingested yet: my-line, textures" in err
    assert "Run: `entroad data samples && entroad ingest my-line textures`" in err
    # train: the FIRST error already says how to get the auxiliary data
    err = entroad(tmp_path, "train", "--no-track", "--out", "run", ok=False).stderr
    assert err.startswith("error: train.dataset: not ingested yet: textures")
    assert "`entroad data samples && entroad ingest textures`" in err
    assert not (tmp_path / "run").exists()


def test_unknown_suite_suggests():
    from entroad.config import params_from_dict
    from entroad.errors import ConfigError
    from entroad.evaluation.engine import suite_targets

    p = params_from_dict({"evaluation": {"suites": {"site": {"train": "a", "targets": ["b"]}}}})
    with pytest.raises(ConfigError, match=r"no suite named 'sit' \(did you mean 'site'\?\)"):
        suite_targets(p, "sit")


def test_params_errors_name_the_dataset_key_and_suggest(tmp_path):
    (tmp_path / "params.yaml").write_text(
        "data:\n  datasets:\n    a: {format: folder, source: x}\n"
        "    my-line: {format: folder, source: raw, option: {normal: ok}}\nmodel: {entropi: 1d}\n")
    err = entroad(tmp_path, "data", "list", ok=False).stderr
    assert "data.datasets.my-line.option: unknown key (did you mean 'options'?)" in err
    assert "model.entropi: unknown key (did you mean 'entropy'?)" in err and "datasets.1" not in err
    # a reader option: named by its dataset key, with a suggestion, before any work
    (tmp_path / "params.yaml").write_text(PARAMS.replace("{normal: ok}", "{normal: ok, missing_mask: keep}"))
    my_line(tmp_path / "raw/my-line")
    err = entroad(tmp_path, "ingest", "my-line", ok=False).stderr
    assert "data.datasets.my-line: format 'folder': unknown option(s) ['missing_mask']" in err
    assert "(did you mean 'missing_masks'?)" in err
    assert not (tmp_path / "store/processed/my-line").exists()
