"""The review app through Flask's test client: queue, verdicts, images, security."""

from __future__ import annotations

import csv
import io
import json

import pytest
from PIL import Image

from entroad.errors import InputError
from entroad.review.app import create_app
from entroad.review.queue import PredictionQueue
from entroad.review.store import REVIEW_DIR
from tests.review.conftest import HOSTILE_NAME

TOKEN = "s3cret-token"


def _scores(folder):
    with open(folder / "scores.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def client(predictions):
    return create_app(predictions, "ann").test_client()


def test_queue_pages_sorts_and_counts_flagged(client, predictions):
    rows = _scores(predictions)
    d = client.get("/api/queue?per_page=5").get_json()
    assert d["total"] == len(rows) and d["pages"] == -(-len(rows) // 5) and len(d["items"]) == 5
    scores = [it["score"] for it in d["items"]]
    assert scores == sorted(scores, reverse=True) and scores[0] == max(float(r["score"]) for r in rows)
    assert d["threshold"] == 0.5 and d["flagged"] == sum(r["flagged"] == "1" for r in rows)
    last = client.get(f"/api/queue?per_page=5&page={d['pages'] - 1}").get_json()
    assert len(last["items"]) == len(rows) - 5 * (d["pages"] - 1)
    thr = sorted(float(r["score"]) for r in rows)[3]
    near = client.get(f"/api/queue?sort=uncertainty&threshold={thr}").get_json()
    gaps = [abs(it["score"] - thr) for it in near["items"]]
    assert gaps == sorted(gaps) and near["flagged"] == len(rows) - 4


def test_verdicts_are_saved_and_kept_by_a_new_app(client, predictions):
    items = client.get("/api/queue").get_json()["items"]
    box = [{"type": "box", "x0": 0.1, "y0": 0.1, "x1": 0.4, "y1": 0.5}]
    r = client.post("/api/verdict", json={"id": items[0]["id"], "verdict": "anomalous", "reviewer": "bob", "marks": box})
    assert r.status_code == 200 and r.get_json()["saved"]["reviewer"] == "bob"
    client.post("/api/verdict", json={"id": items[1]["id"], "verdict": "normal"})  # default reviewer
    client.post("/api/verdict", json={"id": items[0]["id"], "verdict": "normal", "reviewer": "ann"})
    fresh = create_app(predictions, "ann").test_client()
    d = fresh.get("/api/queue").get_json()
    assert d["reviewed"] == 2 and d["conflicts"] == 1
    first = d["items"][0]
    assert {v["reviewer"]: v["verdict"] for v in first["verdicts"]} == {"bob": "anomalous", "ann": "normal"}
    assert first["conflict"] and first["verdicts"][0]["marks"] == box
    conflicts = fresh.get("/api/conflicts").get_json()["conflicts"]
    assert [c["id"] for c in conflicts] == [items[0]["id"]]
    undone = fresh.post("/api/undo", json={"reviewer": "ann"}).get_json()
    assert undone["undone"]["id"] == items[0]["id"] and undone["index"] == items[0]["index"]
    around = fresh.get(f"/api/queue?per_page=2&around={items[1]['id']}").get_json()
    assert items[1]["id"] in [it["id"] for it in around["items"]]


def test_images_are_the_panels_of_the_predict_overlay(client, predictions):
    row = _scores(predictions)[0]
    with Image.open(predictions / row["overlay"]) as ov:
        w = (ov.width - 6) // 2
        h = ov.height - 34
    for name in ("image", "overlay"):
        r = client.get(f"/img/0/{name}")
        assert r.status_code == 200 and r.mimetype == "image/png"
        assert Image.open(io.BytesIO(r.data)).size == (w, h)
    thumb = client.get("/img/0/thumb")
    assert max(Image.open(io.BytesIO(thumb.data)).size) <= 160
    assert (predictions / REVIEW_DIR / "thumbs" / "0.png").is_file()  # built once, on demand
    assert client.get("/map/0/entropy").status_code == 404  # no model given: no maps


@pytest.mark.parametrize("url", [
    "/files/../../../../etc/passwd", "/files/%2e%2e/%2e%2e/etc/passwd", "/files//etc/passwd",
    "/files/overlays/../../outside.txt", "/files/.review/verdicts.jsonl", "/img/9999/image", "/img/0/..%2f..%2fetc",
    "/img/-1/image", "/map/0/../../etc/passwd", "/api/item/99999", "/api/queue?around=../../etc/passwd",
])
def test_paths_outside_the_folder_are_404(client, predictions, url):
    (predictions.parent / "outside.txt").write_text("secret")
    (predictions / REVIEW_DIR).mkdir(exist_ok=True)
    (predictions / REVIEW_DIR / "verdicts.jsonl").write_text("")
    r = client.get(url)
    assert r.status_code == 404, (url, r.status_code)
    assert b"secret" not in r.data and b"root:" not in r.data


def test_files_inside_are_served_and_symlinks_out_are_404(client, predictions):
    assert client.get("/files/scores.csv").status_code == 200
    (predictions.parent / "outside.txt").write_text("secret")
    (predictions / "overlays" / "link.png").symlink_to(predictions.parent / "outside.txt")
    assert client.get("/files/overlays/link.png").status_code == 404


def test_api_calls_about_unknown_items_are_404(client):
    for body in ({"id": "../../etc/passwd", "verdict": "normal"}, {"id": "/etc/passwd", "verdict": "normal"}):
        assert client.post("/api/verdict", json=body).status_code == 404


def test_bad_verdicts_are_400_with_a_reason(client):
    item = client.get("/api/queue").get_json()["items"][0]["id"]
    r = client.post("/api/verdict", json={"id": item, "verdict": "perhaps"})
    assert r.status_code == 400 and "verdict must be one of" in r.get_json()["error"]
    assert client.post("/api/verdict", data="not json").status_code == 400


def test_names_with_markup_are_escaped(tmp_path, predictions):
    hostile = tmp_path / '<img src=x onerror=alert(1)>'
    predictions.rename(hostile)
    app = create_app(hostile, '<b>reviewer</b>')
    client = app.test_client()
    html = client.get("/").get_data(as_text=True)
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<b>reviewer</b>" not in html and "&lt;b&gt;reviewer&lt;/b&gt;" in html
    r = client.get("/")
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]  # no inline script can run
    d = client.get("/api/queue?sort=id&per_page=200")
    assert d.mimetype == "application/json" and d.headers["X-Content-Type-Options"] == "nosniff"
    assert HOSTILE_NAME in [it["id"] for it in d.get_json()["items"]]  # data, shown with textContent
    js = client.get("/static/review.js").get_data(as_text=True)
    assert "innerHTML" not in js.replace("never innerHTML", "")


def test_token_guards_every_route(predictions):
    client = create_app(predictions, "ann", token=TOKEN).test_client()
    urls = ["/", "/static/review.js", "/api/queue", "/api/conflicts", "/img/0/thumb", "/files/scores.csv",
            "/no-such-route", "/api/item/0"]
    for url in urls:
        assert client.get(url).status_code == 401, url
        assert client.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401, url
    assert client.post("/api/verdict", json={"id": "x", "verdict": "normal"}).status_code == 401
    assert client.get("/api/queue", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    first = client.get(f"/?token={TOKEN}")
    assert first.status_code == 302 and first.headers["Location"] == "/"  # token leaves the address bar
    assert "HttpOnly" in first.headers["Set-Cookie"]
    assert client.get("/api/queue").status_code == 200  # the cookie from now on


def test_not_a_predictions_folder_says_what_is_missing(tmp_path, predictions):
    with pytest.raises(InputError, match="missing the folder itself"):
        PredictionQueue(tmp_path / "does-not-exist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="missing predict.json and scores.csv"):
        PredictionQueue(tmp_path / "empty")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "scores.csv").write_text("id,score,overlay\n")
    with pytest.raises(InputError, match=r"missing predict.json\. Create one with `entroad predict"):
        PredictionQueue(tmp_path / "half")
    (tmp_path / "half" / "predict.json").write_text(json.dumps({"threshold": None}))
    with pytest.raises(InputError, match="no scored images"):
        PredictionQueue(tmp_path / "half")
    (predictions / "scores.csv").write_text("id,score,overlay\na.png,oops,\n")
    with pytest.raises(InputError, match="line 2 has no valid score"):
        PredictionQueue(predictions)


def test_a_corrupt_store_stops_the_app_with_the_line(predictions):
    (predictions / REVIEW_DIR).mkdir()
    (predictions / REVIEW_DIR / "verdicts.jsonl").write_text("{not json\n")
    with pytest.raises(InputError, match="line 1 is broken"):
        create_app(predictions, "ann")
