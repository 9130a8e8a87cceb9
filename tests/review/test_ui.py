"""The review page in a real browser (Debian chromium): keyboard labelling, reload, a killed
server, then export, ingest and evaluate. Run with ``make test-ui``."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from entroad.cli import app
from entroad.review.store import REVIEW_DIR, STORE_FILE
from tests.review.browser import ReviewServer, chrome, require_browser
from tests.review.conftest import HOSTILE_NAME

pytestmark = pytest.mark.ui
WAIT = 60


@pytest.fixture(scope="session", autouse=True)
def _browser_installed():
    require_browser()  # autouse: decided before the (slow) predictions are made


@pytest.fixture
def browser():
    driver = chrome()
    yield driver
    driver.quit()


def _wait(driver, cond, timeout=WAIT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: cond(d))


def _open(driver, url):
    from selenium.webdriver.common.by import By

    driver.get(url)
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#items li") and d.find_element(By.ID, "item-id").text.strip())


def _badges(driver) -> dict[str, str]:
    """Name -> verdict badge of each queue row, read in one go (the list re-renders)."""
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#items li')].map(li => "
        "[li.querySelector('.name').textContent, li.querySelector('.badge').textContent]);")
    return dict(rows)


def _key(driver, key):
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(key).perform()


def _label(driver, key, verdict):
    from selenium.webdriver.common.by import By

    shown = driver.find_element(By.ID, "item-id").text
    _key(driver, key)
    _wait(driver, lambda d: d.find_element(By.ID, "status").text == f"saved: {shown} → {verdict}")
    return shown


def _draw_box(driver):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "#tools [data-tool=box]").click()
    canvas = driver.find_element(By.ID, "marks")
    w, h = canvas.size["width"], canvas.size["height"]
    (ActionChains(driver).move_to_element_with_offset(canvas, -w // 4, -h // 4).click_and_hold()
     .move_by_offset(w // 4, h // 4).release().perform())
    _wait(driver, lambda d: "1 mark(s)" in d.find_element(By.ID, "status").text)


def test_label_reload_kill_restart_export_ingest_evaluate(browser, predictions, site_repo, checkpoint):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    given = {}
    server = ReviewServer(predictions, "--reviewer", "ann", cwd=site_repo).start()
    try:
        _open(browser, server.url)
        _draw_box(browser)
        given[_label(browser, "a", "anomalous")] = "anomalous"
        given[_label(browser, "n", "normal")] = "normal"
        given[_label(browser, "a", "anomalous")] = "anomalous"
        wrong = _label(browser, "a", "anomalous")
        _key(browser, "u")  # undo the last one: back on it, the verdict withdrawn
        _wait(browser, lambda d: d.find_element(By.ID, "status").text.startswith(f"undone: {wrong}"))
        assert browser.find_element(By.ID, "item-id").text == wrong
        given[_label(browser, "n", "normal")] = "normal"
        given[_label(browser, "s", "skip")] = "skipped"
        _key(browser, Keys.ARROW_LEFT)
        _wait(browser, lambda d: d.find_element(By.ID, "item-id").text == list(given)[-1])
        browser.refresh()
        _open(browser, server.url)
        assert {k: v for k, v in _badges(browser).items() if v} == given
    finally:
        server.kill()  # SIGKILL: whatever was acknowledged must be on disk
    with ReviewServer(predictions, cwd=site_repo) as again:
        _open(browser, again.url)
        assert {k: v for k, v in _badges(browser).items() if v} == given
        assert browser.find_element(By.ID, "progress").text.startswith("5 of ")
    lines = (predictions / REVIEW_DIR / STORE_FILE).read_text().splitlines()
    assert len(lines) == 7 and all(json.loads(x)["reviewer"] == "ann" for x in lines)  # 6 verdicts + 1 undo

    runner = CliRunner()
    res = runner.invoke(app, ["review", "export", str(predictions), "--dataset", "site-ui", "--target"])
    assert res.exit_code == 0, res.output
    assert "2 anomalous (1 with a mask), 2 normal" in res.output and "ingested:" in res.output
    assert "site-ui" in yaml.safe_load((site_repo / "params.yaml").read_text())["data"]["datasets"]
    ev = runner.invoke(app, ["evaluate", "--model", str(checkpoint), "--data", "site-ui", "--out", "eval",
                             "--no-report", "--device", "cpu", "--set", "evaluation.min_per_label=2"])
    assert ev.exit_code == 0, ev.output
    ds = json.loads((site_repo / "eval" / "results.json").read_text())["datasets"][0]
    assert ds["name"] == "site-ui" and ds["n_images"] == 4


def test_hostile_names_are_text_and_the_token_is_needed(browser, predictions):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    with ReviewServer(predictions, "--host", "127.0.0.2", env={"ENTROAD_REVIEW_TOKEN": "tok-123"}) as server:
        browser.get(server.url)
        assert "401" in browser.find_element(By.TAG_NAME, "body").text
        _open(browser, server.url + "?token=tok-123")
        browser.find_element(By.ID, "sort").send_keys("by name")
        _wait(browser, lambda d: HOSTILE_NAME in _badges(d))
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018 - the markup in the name never ran
        assert not browser.find_elements(By.CSS_SELECTOR, "#items img[src='x']")
