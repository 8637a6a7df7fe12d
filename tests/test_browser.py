"""The dashboard in a real browser: Debian's Chromium, headless, against `streamlit run`.

Screenshots of every page go to artifacts/screenshots/ (gitignored) for people to look at.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
PAGES = {"Home", "Data", "Train", "Generate", "Runs"}
# Every navigation entry the browser ever shows, recorded from the first paint on: Streamlit's own
# menu (a flash of the auto-discovered pages/ list: "streamlit app", "data", ...) and our links.
RECORD_NAV = r"""
window.__navSeen = new Set();
window.__builtinNav = new Set();
new MutationObserver(() => {
  document.querySelectorAll("[data-testid='stSidebarNav'] a, [data-testid='stSidebarNavLink']")
    .forEach(a => window.__builtinNav.add(a.innerText.trim()));
  document.querySelectorAll("[data-testid='stSidebar'] [data-testid='stPageLink'] a")
    .forEach(a => window.__navSeen.add(a.innerText.trim().split("\n").pop()));  // drop the icon
}).observe(document, {subtree: true, childList: true, characterData: true});
"""
CHART_POINTS = """() => {
  const el = document.querySelector("[data-testid='stPlotlyChart'] .js-plotly-plot");
  return el && el.data && el.data.length ? el.data[0].x.length : 0;
}"""

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(time_machine_path):
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "streamlit_app.py",
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, "CHARRNN_DATA_DIR": str(time_machine_path.parent)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start:\n{proc.stdout.read() if proc.poll() is not None else ''}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        assert "Traceback" not in out, out


@pytest.fixture
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        context = browser.new_context(viewport={"width": 1400, "height": 2000})
        context.add_init_script(RECORD_NAV)
        pg = context.new_page()
        pg.set_default_timeout(60_000)
        yield pg
        browser.close()


def settle(pg):
    pg.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']")
    pg.wait_for_timeout(500)


def shot(pg, name: str):
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def go(pg, title: str):
    pg.locator("[data-testid='stSidebar'] [data-testid='stPageLink'] a", has_text=title).click()
    pg.wait_for_selector(f"h1:has-text('{title}')")
    settle(pg)


def test_pages_in_a_browser(server, page):
    page.goto(server)
    page.wait_for_selector("h1:has-text('charrnn studio')")
    settle(page)
    assert page.get_by_text("The Time Machine is cached").count() == 1
    shot(page, "1-home")

    go(page, "Data")
    page.get_by_text("Vocab size").wait_for()
    page.get_by_text("(1120, 28)").wait_for()
    shot(page, "2-data")

    go(page, "Train")
    for label, value in (("num_hiddens", "64"), ("num_epochs", "2000")):
        box = page.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Tab")
    page.get_by_role("button", name="Start").click()
    page.wait_for_function(f"({CHART_POINTS})() >= 2", timeout=60_000)
    page.wait_for_timeout(1500)  # one more live refresh, for the screenshot
    shot(page, "3-train-running")
    page.get_by_role("button", name="Stop").click()
    page.locator("[data-testid='stProgress']", has_text="stopped").wait_for()
    settle(page)
    points = page.evaluate(CHART_POINTS)
    assert 2 <= points < 2000
    shot(page, "4-train-stopped")

    go(page, "Generate")
    page.get_by_role("button", name="Generate").click()
    code = page.locator("[data-testid='stCode']", has_text="time traveller")
    code.wait_for()
    settle(page)
    assert len(code.inner_text().strip("\n")) == len("time traveller") + 50
    shot(page, "5-generate")

    seen = set(page.evaluate("[...window.__navSeen]"))
    assert seen == PAGES, seen
    assert page.evaluate("[...window.__builtinNav]") == []
