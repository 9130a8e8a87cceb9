"""A real review server in its own process and Debian's chromium driven by Selenium (shared by
the browser tests and benchmarks/review_first_paint.py). No browser is downloaded."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("ENTROAD_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ENTROAD_CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL_HINT = "install Debian's browser and driver: sudo apt-get install -y chromium chromium-driver"
UI_ENV = "ENTROAD_UI_TESTS"  # =1 (CI): a missing browser fails instead of skipping


def browser_missing() -> str | None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (Path(p).is_file() or shutil.which(p))]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[dev]')")
    return f"no {', '.join(missing)}; {INSTALL_HINT}" if missing else None


def require_browser() -> None:
    why = browser_missing()
    if why is None:
        return
    if os.environ.get(UI_ENV) == "1":
        pytest.fail(f"{UI_ENV}=1 but the browser tests cannot run: {why}")
    pytest.skip(why)


def chrome(width: int = 1400, height: int = 900):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--disable-extensions", "--no-first-run"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


class ReviewServer:
    """``entroad review FOLDER --port 0`` as a child process; ``url`` once it listens."""

    def __init__(self, folder: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
        self.cmd = [sys.executable, "-m", "entroad.cli", "review", str(folder), "--port", "0", *args]
        self.env = {**os.environ, "COLUMNS": "200", **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.output: list[str] = []

    def start(self, timeout: float = 180) -> ReviewServer:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=self.env, cwd=self.cwd)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            m = re.search(r"Review page: (http://\S+)", line)
            if m:
                self.url = m.group(1)
                # keep reading the request log, else a full pipe would stall the server
                threading.Thread(target=self.output.extend, args=(self.proc.stdout,), daemon=True).start()
                return self
        self.kill()
        raise RuntimeError("review server did not start:\n" + "".join(self.output))

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, like a crash or a pulled plug."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def __enter__(self) -> ReviewServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()
