"""The review web app (Flask): one page, a small JSON API and the images it shows.

Every image URL names an item by its index in ``scores.csv`` (or a file by its path inside
the predictions folder, checked); anything else is a 404. With a token (remote access) every
route answers 401 until the token is given once (``?token=``, then a cookie, or an
``Authorization: Bearer`` header). Item ids and reviewer names reach the page only as JSON
set with ``textContent`` or through the template's auto-escaping, under a strict CSP.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, jsonify, redirect, render_template, request, send_file

from entroad.errors import EntroADError
from entroad.review.images import PANELS, panel, png_bytes, thumbnail
from entroad.review.queue import PredictionQueue, QueueItem
from entroad.review.store import CONFLICT_RULES, REVIEW_DIR, STORE_FILE, VerdictStore

log = logging.getLogger(__name__)

TOKEN_COOKIE = "entroad_review_token"
PER_PAGE = 50
MAP_KINDS = ("entropy", "routing", "confidence")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _verdict_json(item: QueueItem, store: VerdictStore, threshold: float) -> dict[str, Any]:
    state = store.state(item.id)
    verdicts = sorted(state.by_reviewer.values(), key=lambda v: v.time) if state else []
    return {
        "index": item.index, "id": item.id, "score": item.score, "flagged": item.score > threshold,
        "has_image": bool(item.overlay),
        "verdicts": [v.to_json() for v in verdicts], "conflict": bool(state and state.conflict),
    }


def create_app(folder: str | Path, reviewer: str, token: str | None = None, maps: Any = None) -> Flask:
    """The app for one predictions folder. ``maps``: an object with ``render(item, kind) -> PNG
    bytes`` for the entropy / routing / confidence maps (None: the page says how to get them)."""
    queue = PredictionQueue(folder)
    store = VerdictStore(queue.folder / REVIEW_DIR / STORE_FILE, known_ids=queue.by_id)
    thumbs = queue.folder / REVIEW_DIR / "thumbs"
    app = Flask(__name__, static_folder="static", template_folder="templates")
    app.url_map.merge_slashes = False  # "//etc/passwd" is a path to refuse (404), not to redirect
    app.config.update(queue=queue, store=store, JSON_SORT_KEYS=False, MAX_CONTENT_LENGTH=1 << 20)
    token_hash = hashlib.sha256(token.encode()).hexdigest() if token else None

    def item_at(index: int) -> QueueItem:
        if not 0 <= index < len(queue.items):
            abort(404)
        return queue.items[index]

    @lru_cache(maxsize=8)
    def ordered(sort: str, threshold: float) -> list[QueueItem]:
        return queue.ordered(sort, threshold)

    def threshold_arg() -> float:
        raw = request.args.get("threshold")
        try:
            return queue.default_threshold() if raw in (None, "") else float(raw)
        except ValueError:
            abort(400, "threshold must be a number")

    @app.before_request
    def _auth() -> Response | None:
        if token_hash is None:
            return None
        given = request.args.get("token") or request.cookies.get(TOKEN_COOKIE) or ""
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[7:]
        if not hmac.compare_digest(hashlib.sha256(given.encode()).hexdigest(), token_hash):
            return Response("401: this review page needs its token (printed when the server started)\n",
                            401, {"WWW-Authenticate": "Bearer", "Content-Type": "text/plain"})
        if "token" in request.args:  # keep it out of the address bar and history from now on
            resp = redirect(request.path)
            resp.set_cookie(TOKEN_COOKIE, given, httponly=True, samesite="Strict")
            return resp
        return None

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    @app.errorhandler(EntroADError)
    def _user_error(e: EntroADError) -> tuple[Response, int]:
        return jsonify(error=str(e)), 400

    @app.get("/")
    def index() -> str:
        lo, hi = queue.score_range()
        return render_template(
            "review.html", folder=queue.folder.name, total=len(queue.items), reviewer=reviewer,
            threshold=queue.default_threshold(), has_threshold=queue.threshold is not None, lo=lo, hi=hi,
            kind=queue.kind, random_init=queue.random_init, per_page=PER_PAGE, rules=CONFLICT_RULES,
            maps=maps is not None,
        )

    @app.get("/api/queue")
    def api_queue() -> Response:
        thr = threshold_arg()
        sort = request.args.get("sort", "score")
        if sort not in ("score", "uncertainty", "id"):
            abort(400, "unknown sort")
        per_page = max(1, min(200, request.args.get("per_page", PER_PAGE, type=int)))
        order = ordered(sort, thr)
        pages = max(1, -(-len(order) // per_page))
        if "around" in request.args:  # the page holding one item (after an undo, say)
            item = queue.by_id.get(request.args["around"]) or abort(404)
            page = order.index(item) // per_page
        else:
            page = max(0, min(request.args.get("page", 0, type=int), pages - 1))
        rows = order[page * per_page:(page + 1) * per_page]
        return jsonify(
            items=[_verdict_json(it, store, thr) for it in rows], page=page, pages=pages, total=len(order),
            flagged=queue.flagged_count(thr), threshold=thr, reviewed=store.reviewed(),
            conflicts=len(store.conflicts()),
        )

    @app.get("/api/item/<int:index>")
    def api_item(index: int) -> Response:
        return jsonify(_verdict_json(item_at(index), store, threshold_arg()))

    def _body() -> dict[str, Any]:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            abort(400, "expected a JSON object")
        return data

    @app.post("/api/verdict")
    def api_verdict() -> Response:
        data = _body()
        item_id = str(data.get("id", ""))
        if item_id not in queue.by_id:
            abort(404)
        v = store.add(item_id, str(data.get("verdict")), str(data.get("reviewer") or reviewer), data.get("marks"))
        return jsonify(saved=v.to_json(), reviewed=store.reviewed(), conflicts=len(store.conflicts()))

    @app.post("/api/undo")
    def api_undo() -> Response:
        v = store.undo(str(_body().get("reviewer") or reviewer))
        return jsonify(undone=None if v is None else v.to_json(), reviewed=store.reviewed(),
                       index=None if v is None else queue.by_id[v.id].index)

    @app.get("/api/conflicts")
    def api_conflicts() -> Response:
        return jsonify(conflicts=[{"id": i, "index": queue.by_id[i].index, "verdicts": [v.to_json() for v in vs]}
                                  for i, vs in store.conflicts()])

    @app.get("/img/<int:index>/<name>")
    def image(index: int, name: str) -> Response:
        item = item_at(index)
        src = queue.resolve(item.overlay)
        if src is None or name not in (*PANELS, "thumb"):
            abort(404)
        if name == "thumb":
            data = thumbnail(src, thumbs / f"{index}.png")
        else:
            data = png_bytes(panel(src, name))
        return Response(data, mimetype="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @lru_cache(maxsize=64)
    def rendered_map(index: int, kind: str) -> bytes | None:
        src = queue.resolve(queue.items[index].overlay)
        return None if src is None else maps.render(panel(src, "image"), kind)

    @app.get("/map/<int:index>/<kind>")
    def map_image(index: int, kind: str) -> Response:
        item_at(index)
        if maps is None or kind not in MAP_KINDS:
            abort(404)
        data = rendered_map(index, kind) or abort(404)
        return Response(data, mimetype="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/files/<path:rel>")
    def files(rel: str) -> Response:
        path = queue.resolve(rel)
        if path is None or path.is_relative_to(queue.folder / REVIEW_DIR):
            abort(404)
        return send_file(path, max_age=0)

    return app
