"""Fixtures of the view's browser tests: Debian's Chromium driven by its chromedriver through selenium (nothing
downloads a browser), and the view's Bokeh server on a free loopback port in its own thread.

- ``chrome`` -> a headless ``selenium.webdriver.Chrome`` with a fresh profile; its console is read with
  ``console_errors(driver)``; screenshots go to ``artefacts`` (a tmp folder kept by pytest).
- ``serve_timeline(timeline)`` -> the URL of a running view of ``timeline``, stopped at the end of the test.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bokeh.server.server import Server
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from support.view_thread import serve_in_thread

from phasetwin.view.timeline import Timeline

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
MODEL = "Bokeh.documents[0].get_model_by_name('{}')"
# Bokeh 3 draws widgets inside shadow roots: find elements by walking them.
DEEP = """
function deep(root, test) {
  for (const el of root.querySelectorAll('*')) {
    if (test(el)) return el;
    if (el.shadowRoot) { const hit = deep(el.shadowRoot, test); if (hit) return hit; }
  }
  return null;
}
"""


@pytest.fixture
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("view-screenshots", numbered=True)


@pytest.fixture
def chrome(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    for binary in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} missing: apt-get install chromium chromium-driver (scripts/bootstrap installs "
                        "them)", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-extensions", "--window-size=1400,1900",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def serve_timeline() -> Iterator[Callable[[Timeline], str]]:
    started: list[tuple[Server, threading.Thread]] = []

    def serve(timeline: Timeline) -> str:
        server, thread = serve_in_thread(timeline)
        started.append((server, thread))
        return f"http://127.0.0.1:{server.port}/"

    yield serve
    for server, thread in started:
        loop = server.io_loop
        loop.add_callback(server.stop)
        loop.add_callback(loop.stop)
        thread.join(10)


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """Console messages of level SEVERE since the last call (warnings are not errors)."""
    return [f"{e['level']}: {e['message']}" for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def wait_for(predicate: Callable[[], object], *, timeout_s: float = 30.0, what: str = "the page") -> object:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as err:  # the page may not be there yet; the message says what it was
            last = err
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what} not ready within {timeout_s:.0f} s (last: {last!r})")
