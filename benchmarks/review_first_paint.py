"""Time to first paint of the review page for a 10,000-prediction queue, in a real browser.

Scores a few synthetic images with the real ``predict`` (tiny random-init model), then grows
the folder to ``--n`` predictions the way a large site run looks (distinct ids, overlay files
hard-linked, scores spread out), starts ``entroad review`` in its own process and opens the
page in Debian's headless chromium ``--loads`` times. Per load it reads from the browser:

* ``first_paint``:  first-contentful-paint (the header and the page frame);
* ``queue_ready``:  the first page of the queue listed and the first image requested;
* ``img_requests``: images fetched (pagination + lazy thumbnails: one page, not the queue).

Prints the medians for ``--n`` and for ``--small`` predictions; the last line is
``first_paint_ratio=<n / small>`` (close to 1: the page does not grow with the queue).
    python benchmarks/review_first_paint.py [--n 10000] [--small 100] [--loads 5] [--screenshot PNG]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.review.browser

from entroad.config import params_from_dict  # noqa: E402
from entroad.predict import SCORES_FILE, overlay_name  # noqa: E402
from entroad.predict.run import SCORE_COLUMNS  # noqa: E402

TINY = {"backbone": {"name": "entroad-tiny", "pretrained": None, "image_size": 112, "random_init_fallback": False,
                     "device": "cpu", "precision": "fp32"}, "evaluation": {"num_workers": 0, "batch_size": 8}}


def real_predictions(root: Path, n_images: int) -> Path:
    from entroad.checkpoint import save_checkpoint
    from entroad.data.synthetic import write_processed_dataset
    from entroad.model import EntroAD
    from entroad.predict import predict

    params = params_from_dict(TINY)
    save_checkpoint(EntroAD.build(params, device="cpu"), root / "model")
    half = max(1, n_images // 4)
    ds = write_processed_dataset(root / "gen", "site", ["stripes", "dots"], half, half, 96, seed=0)
    images = root / "images"
    images.mkdir()
    for i, rec in enumerate(ds.records):
        shutil.copy(ds.root / rec.image, images / f"part{i:03d}.png")
    predict(root / "model", images, root / "base", params=params, threshold=0.5, device="cpu", progress=False)
    return root / "base"


def grow(base: Path, dest: Path, n: int) -> Path:
    """``n`` predictions from the real ones: new ids, hard-linked overlays, spread scores."""
    with open(base / SCORES_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    dest.mkdir()
    shutil.copy(base / "predict.json", dest / "predict.json")
    (dest / "overlays").mkdir()
    rng = np.random.default_rng(0)
    with open(dest / SCORES_FILE, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SCORE_COLUMNS, lineterminator="\n")
        w.writeheader()
        for i in range(n):
            src = rows[i % len(rows)]
            item_id = f"line{i // 1000:02d}/part{i:05d}.png"
            rel = f"overlays/{overlay_name(item_id)}"
            os.link(base / src["overlay"], dest / rel)
            score = float(np.clip(float(src["score"]) + rng.normal(0, 0.05), 0, 1))
            w.writerow({**src, "id": item_id, "score": f"{score:.6f}", "flagged": int(score > 0.5), "overlay": rel})
    return dest


JS = """
const p = performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint');
const q = performance.getEntriesByName('queue-ready')[0];
const imgs = performance.getEntriesByType('resource').filter(e => e.name.includes('/img/'));
return [p ? p.startTime : null, q ? q.startTime : null, imgs.length];
"""


def measure(folder: Path, loads: int, screenshot: Path | None = None) -> dict[str, float]:
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.review.browser import ReviewServer, chrome

    out: dict[str, list[float]] = {"first_paint": [], "queue_ready": [], "img_requests": []}
    with ReviewServer(folder, "--reviewer", "line7-engineer") as server:
        driver = chrome()
        try:
            driver.get(server.url)  # warm-up: the server builds its sorted views once
            WebDriverWait(driver, 120).until(lambda d: d.execute_script(JS)[1] is not None)
            for _ in range(loads):
                driver.get("about:blank")
                driver.get(server.url)
                fp, qr, n_img = WebDriverWait(driver, 120).until(
                    lambda d: (lambda r: r if r[0] is not None and r[1] is not None else None)(d.execute_script(JS)))
                out["first_paint"].append(fp)
                out["queue_ready"].append(qr)
                out["img_requests"].append(n_img)
            if screenshot is not None:
                take_screenshot(driver, screenshot)
        finally:
            driver.quit()
    return {k: statistics.median(v) for k, v in out.items()}


def take_screenshot(driver, path: Path) -> None:
    """The page after a few keyboard verdicts, with a box being drawn on the current image."""
    import time

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.set_window_size(1280, 800)
    for key in ("a", "n", "a", Keys.ARROW_LEFT, Keys.ARROW_LEFT):
        ActionChains(driver).send_keys(key).perform()
        time.sleep(0.5)
    driver.find_element(By.CSS_SELECTOR, "#tools [data-tool=box]").click()
    canvas = driver.find_element(By.ID, "marks")
    w, h = canvas.size["width"], canvas.size["height"]
    ActionChains(driver).move_to_element_with_offset(canvas, -w // 6, -h // 5).click_and_hold() \
        .move_by_offset(w // 3, h // 4).release().perform()
    driver.execute_script("const o = document.getElementById('opacity'); o.value = 0.7; o.dispatchEvent(new Event('input'));")
    time.sleep(1)
    driver.save_screenshot(str(path))
    from PIL import Image

    with Image.open(path) as im:  # a palette PNG: a fraction of the size, same look
        im.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--images", type=int, default=24, help="images scored by the real predict")
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--screenshot", type=Path, default=None)
    args = ap.parse_args()
    from tests.review.browser import browser_missing

    why = browser_missing()
    if why:
        sys.exit(why)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = real_predictions(root, args.images)
        results = {}
        for n in (args.small, args.n):
            folder = grow(base, root / f"queue-{n}", n)
            results[n] = measure(folder, args.loads, args.screenshot if n == args.n else None)
            r = results[n]
            print(f"n={n:>6}  first_paint={r['first_paint']:.0f} ms  queue_ready={r['queue_ready']:.0f} ms  "
                  f"img_requests={r['img_requests']:.0f}  (median of {args.loads} loads)")
    print(f"first_paint_ratio={results[args.n]['first_paint'] / results[args.small]['first_paint']:.2f}")
    print(f"queue_ready_ratio={results[args.n]['queue_ready'] / results[args.small]['queue_ready']:.2f}")


if __name__ == "__main__":
    main()
