"""The browser tests' fixtures: the app's own server, and Debian's Chromium driven by Playwright. On a developer
machine a missing browser skips its tests and says why; in CI it fails them."""

import os
from pathlib import Path

import pytest
from appserver import CHROMIUM, CHROMIUM_ARGS
from support import missing, serve


@pytest.fixture
def server(time_machine_path):
    """`streamlit run` with this test's store: see support.serve."""
    yield from serve(time_machine_path)


def chromium_path(playwright) -> str:
    """The Chromium to drive: CHARRNN_CHROMIUM if set (no fallback: it was asked for), else Debian's,
    else the one `playwright install` put in Playwright's cache. Missing: skip, or fail in CI."""
    if os.environ.get("CHARRNN_CHROMIUM"):
        path = os.environ["CHARRNN_CHROMIUM"]
        if not Path(path).is_file():
            missing(f"CHARRNN_CHROMIUM={path} is missing: point it at a Chromium binary or unset it")
        return path
    for path in (CHROMIUM, playwright.chromium.executable_path):
        if Path(path).is_file():
            return path
    missing(
        f"no Chromium for the browser tests: apt-get install -y chromium (gives {CHROMIUM}), "
        "or `python -m playwright install chromium`, or set CHARRNN_CHROMIUM"
    )


@pytest.fixture
def browser():
    """Chromium, headless, through Playwright; missing pieces skip the test, or fail it in CI."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed: pip install -r requirements-dev.txt")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(p), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()
