"""DICOM predictions reach the page, the store and the export only as de-identified renders
with pseudonymous ids; the entropy/routing/confidence maps are computed on demand."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from entroad.review.app import create_app
from entroad.review.export import export_review
from entroad.review.maps import ModelMaps
from entroad.review.store import REVIEW_DIR
from tests.review.conftest import review_params


@pytest.fixture(scope="module")
def dicom_predictions(loaded_model, tmp_path_factory):
    from entroad.data.synthetic.dicom_study import PATIENT_DIR, PLANTED_PHI, PRIVATE_VALUE, write_dicom_study
    from entroad.predict import predict

    root = tmp_path_factory.mktemp("dicom")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENTROAD_DEID_SALT", "test-salt-not-secret")
        write_dicom_study(root / "export", size=48, ct_slices=3, mr_slices=2, mf_frames=2)
        predict(loaded_model, root / "export", root / "predictions", threshold=0.5, device="cpu", progress=False,
                params=review_params(**{"data.root": str(root / "data")}))
    secrets = [s for s in (PATIENT_DIR, PRIVATE_VALUE, *PLANTED_PHI.values()) if len(s) > 6]
    return root / "predictions", secrets


def _leaks(data: bytes | str, secrets: list[str]) -> list[str]:
    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
    return [s for s in secrets if s in text]


def test_dicom_review_and_export_carry_no_header_data(dicom_predictions, tmp_path, monkeypatch):
    import shutil

    master, secrets = dicom_predictions
    predictions = tmp_path / "predictions"
    shutil.copytree(master, predictions)
    client = create_app(predictions, "rad-1").test_client()
    page = client.get("/").get_data(as_text=True)
    assert "pseudonymous ids" in page and not _leaks(page, secrets)
    queue = client.get("/api/queue?per_page=200").get_json()
    assert not _leaks(str(queue), secrets)
    ids = [it["id"] for it in queue["items"]]
    assert all(i.split("/")[1].startswith("stu-") for i in ids)
    for i, it in enumerate(queue["items"][:4]):
        client.post("/api/verdict", json={"id": it["id"], "verdict": "anomalous" if i % 2 else "normal",
                                          "marks": [{"type": "brush", "r": 0.05, "points": [[0.5, 0.5], [0.6, 0.5]]}]})
    assert client.get(f"/img/{queue['items'][0]['index']}/image").status_code == 200
    assert not _leaks((predictions / REVIEW_DIR / "verdicts.jsonl").read_bytes(), secrets)

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "params.yaml").write_text("data: {root: datasets, datasets: {}}\n")
    monkeypatch.chdir(repo)
    res = export_review(predictions, "ward-review", progress=False)
    assert res.counts == {"anomalous": 2, "normal": 2, "with_mask": 2}
    for f in (repo / "datasets").rglob("*"):
        assert not _leaks(f.name, secrets), f
        if f.is_file() and f.suffix in (".json", ".jsonl", ".csv", ".yaml"):
            assert not _leaks(f.read_bytes(), secrets), f
    import yaml

    assert yaml.safe_load((repo / "params.yaml").read_text())["data"]["datasets"]["ward-review"]["domain"] == "medical"


def test_maps_are_rendered_on_demand(predictions, loaded_model, checkpoint):
    maps = ModelMaps(checkpoint, review_params(), model=loaded_model)
    client = create_app(predictions, "ann", maps=maps).test_client()
    assert 'data-maps="1"' in client.get("/").get_data(as_text=True)
    image = Image.open(io.BytesIO(client.get("/img/0/image").data))
    pngs = {}
    for kind in ("entropy", "routing", "confidence"):
        r = client.get(f"/map/0/{kind}")
        assert r.status_code == 200 and r.mimetype == "image/png"
        pngs[kind] = r.data
        assert Image.open(io.BytesIO(r.data)).size == image.size
    assert len(set(pngs.values())) == 3  # three different maps, not one picture thrice
    assert client.get("/map/0/anomaly").status_code == 404
