"""Site prediction: scores, overlays, thresholds, resume, unreadable files, DICOM without PHI."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from entroad.errors import InputError
from entroad.predict import OPERATING_POINT_FILE, predict, resolve_threshold
from tests.evaluation.conftest import eval_params


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def image_folder(data_root, tmp_path):
    src = data_root / "mvtec-ad" / "images"
    folder = tmp_path / "site"
    (folder / "line2").mkdir(parents=True)
    for i, p in enumerate(sorted(src.rglob("*.png"))[:5]):
        shutil.copy(p, (folder / "line2" if i % 2 else folder) / f"part{i}.png")
    (folder / "broken.png").write_text("not an image")
    (folder / "notes.txt").write_text("ignored")
    return folder


def test_scores_overlays_and_failures(checkpoint, image_folder, tmp_path):
    out = tmp_path / "out"
    res = predict(checkpoint, image_folder, out, params=eval_params(), threshold=0.5, device="cpu", progress=False)
    rows = _rows(out / "scores.csv")
    assert res.n_scored == len(rows) == 5 and res.n_total == 6
    assert {r["id"] for r in rows} == {"part0.png", "part2.png", "part4.png", "line2/part1.png", "line2/part3.png"}
    for r in rows:
        s = float(r["score"])
        assert 0.0 <= s <= 1.0
        assert r["flagged"] == str(int(s > 0.5)) and r["random_init"] == "1"
        img = Image.open(out / r["overlay"])
        assert img.width > 2 * 64  # image beside its overlay, enlarged from the 64 px thumbnail
    fails = _rows(out / "failures.csv")
    assert [f["id"] for f in fails] == ["broken.png"] and "cannot read" in fails[0]["reason"]
    meta = json.loads((out / "predict.json").read_text())
    assert meta["random_init"] is True and meta["threshold"] == 0.5 and meta["n_failed"] == 1


def test_resume_skips_scored_files_and_refuses_mixing(loaded_model, image_folder, tmp_path):
    checkpoint = loaded_model  # an in-memory model resumes like a checkpoint folder
    out = tmp_path / "out"
    p = eval_params()
    predict(checkpoint, image_folder, out, params=p, overlays=False, device="cpu", progress=False)
    first = _rows(out / "scores.csv")
    shutil.copy(image_folder / "part0.png", image_folder / "part9.png")
    again = predict(checkpoint, image_folder, out, params=p, overlays=False, device="cpu", progress=False)
    assert again.n_scored == 1 and again.n_skipped == 5
    rows = _rows(out / "scores.csv")
    assert rows[:5] == first and rows[5]["id"] == "part9.png"
    assert rows[5]["score"] == first[[r["id"] for r in first].index("part0.png")]["score"]  # same image, same score
    with pytest.raises(InputError, match="different model or threshold"):
        predict(checkpoint, image_folder, out, params=p, threshold=0.4, device="cpu", progress=False)
    fresh = predict(checkpoint, image_folder, out, params=p, threshold=0.4, restart=True, overlays=False,
                    device="cpu", progress=False)
    assert fresh.n_scored == 6


def test_threshold_sources(checkpoint, tmp_path):
    assert resolve_threshold(None, None, None) == (None, None)
    assert resolve_threshold("0.25", None, None) == (0.25, "given")
    with pytest.raises(InputError, match="no operating point"):
        resolve_threshold("model", checkpoint, {})
    ckpt = tmp_path / "model"
    shutil.copytree(checkpoint, ckpt)
    (ckpt / OPERATING_POINT_FILE).write_text(json.dumps({"threshold": 0.61, "target": "specificity", "target_value": 0.95}))
    assert resolve_threshold("model", ckpt, {})[0] == 0.61
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"datasets": [
        {"name": "a", "operating_point": {"threshold": 0.1, "target": "specificity", "target_value": 0.9}},
        {"name": "b", "operating_point": {"threshold": 0.2, "target": "specificity", "target_value": 0.9}},
    ]}))
    with pytest.raises(InputError, match="--threshold-dataset"):
        resolve_threshold(str(results), None, None)
    assert resolve_threshold(str(results), None, None, dataset="b")[0] == 0.2
    with pytest.raises(InputError):
        resolve_threshold("maybe", None, None)


def test_dicom_folder_gets_pseudonymous_ids_and_no_phi(loaded_model, tmp_path, monkeypatch):
    checkpoint = loaded_model
    from entroad.data.synthetic.dicom_study import PATIENT_DIR, PLANTED_PHI, PRIVATE_VALUE, write_dicom_study

    monkeypatch.setenv("ENTROAD_DEID_SALT", "test-salt")
    src = tmp_path / "export"
    n = write_dicom_study(src, size=48, ct_slices=3, mr_slices=2, mf_frames=2)
    out = tmp_path / "out"
    p = eval_params(**{"data.root": str(tmp_path / "data")})
    res = predict(checkpoint, src, out, params=p, threshold=0.5, device="cpu", progress=False)
    rows = _rows(out / "scores.csv")
    assert len(rows) == res.n_scored == n
    assert all(r["id"].split("/")[1].startswith("stu-") and r["id"].split("/")[2].startswith("ser-") for r in rows)
    secrets = [PATIENT_DIR, PRIVATE_VALUE, *PLANTED_PHI.values()]
    for f in out.rglob("*"):
        if f.is_file() and f.suffix in (".csv", ".json"):
            text = f.read_text()
            leaked = [s for s in secrets if len(s) > 6 and s in text]
            assert not leaked, (f.name, leaked)
    again = predict(checkpoint, src, out, params=p, threshold=0.5, device="cpu", progress=False)
    assert again.n_scored == 0 and again.n_skipped == n  # resumed: same pseudonymous ids


def test_missing_input_is_a_clear_error(loaded_model, tmp_path):
    checkpoint = loaded_model
    with pytest.raises(InputError, match="no such file or folder"):
        predict(checkpoint, tmp_path / "nope", tmp_path / "out", params=eval_params(), device="cpu", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images found"):
        predict(checkpoint, tmp_path / "empty", tmp_path / "out", params=eval_params(), device="cpu", progress=False)


def test_overlay_places_heat_where_the_map_is_high():
    from entroad.predict.overlays import overlay_image

    img = Image.fromarray(np.full((40, 60, 3), 128, np.uint8))
    amap = np.zeros((40, 60), np.float32)
    amap[:, 30:] = 1.0  # right half anomalous
    ov = np.asarray(overlay_image(img, amap, 0.9, True, False))
    right_panel = ov[34:, 66:]  # below the caption band, second panel
    red_left, red_right = right_panel[:, :30, 0].mean(), right_panel[:, 30:, 0].mean()
    assert red_right > red_left + 40  # jet: 1.0 is dark red, 0.0 dark blue
