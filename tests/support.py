"""Helpers shared by the app tests: AppTest (one user, in this process) and Playwright (a real browser)."""

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import appserver  # tools/appserver.py (pyproject puts tools/ on the path)
import pytest
from streamlit.testing.v1 import AppTest

from charrnn.runs.store import StoreError

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
SHOTS = ROOT / "artifacts" / "screenshots"


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def missing(reason: str):
    """Fail in CI, skip elsewhere, with the reason either way."""
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


def chart_points(scope: str = "") -> str:
    """JS: the number of points of the first Plotly chart in `scope` (a CSS selector; the whole page
    when empty), 0 when there is none yet."""
    return f"""() => {{
  const el = document.querySelector("{scope} [data-testid='stPlotlyChart'] .js-plotly-plot");
  return el && el.data && el.data.length ? el.data[0].x.length : 0;
}}"""


# The Train page's own run (this session's) and the run it watches (another session's, read-only).
OWN_CHART_POINTS = chart_points(".st-key-train_own")
WATCHED_CHART_POINTS = chart_points(".st-key-train_elsewhere")


def cli_train(home, *args: str) -> subprocess.Popen:
    """`python -m charrnn train ARGS` in a subprocess recording into the run store in `home`
    (stdout dropped; stderr kept, as text, for failure messages)."""
    env = {**os.environ, "CHARRNN_HOME": str(home)}
    cmd = [sys.executable, "-m", "charrnn", "train", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


# ---- AppTest ---------------------------------------------------------------------------------


def ok(at: AppTest) -> AppTest:
    """`at`, after asserting that its last run raised nothing."""
    assert not at.exception, [e.value for e in at.exception]
    return at


def wait(at: AppTest, done, what: str, timeout: float = 60) -> AppTest:
    """Rerun `at` until `done()` (run_every never fires in AppTest); fail naming `what` after `timeout` s."""
    end = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < end, f"{what} did not happen in time"
        time.sleep(0.3)
        ok(at.run())
    return at


def app() -> AppTest:
    """The app from its entry file, run once, with no exception."""
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def start(at: AppTest, **settings) -> AppTest:
    """On the Train page, set the form's `hp_*` settings and press Start (no exception allowed)."""
    at.switch_page("pages/train.py").run()
    for key, value in settings.items():
        at.number_input(key=f"train_{key}").set_value(value)
    at.button(key="train_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def wait_until_ended(at: AppTest, timeout: float = 60.0) -> AppTest:
    """run_every never fires in AppTest: rerun until the Start button is enabled again."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        time.sleep(0.3)
        at.run()
        if not at.button(key="train_start").disabled:
            return at
    raise AssertionError("the run did not end in time")


def generate(at: AppTest, prefix: str, num: int) -> str:
    """On the Generate page: continue `prefix` by `num` characters; the text shown (no error allowed)."""
    at.text_input(key="generate_gen_prefix").set_value(prefix)
    at.number_input(key="generate_gen_num").set_value(num)
    at.button(key="gen_go").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    return at.code[0].value


def figure(at: AppTest, key: str) -> dict:
    """The Plotly figure of the chart with this key (AppTest has no Plotly element: read its spec)."""
    for el in at.get("plotly_chart"):
        if el.proto.id.endswith(f"-{key}"):
            return json.loads(el.proto.spec)
    raise AssertionError(f"no Plotly chart with key {key}")


# ---- a real browser --------------------------------------------------------------------------


def serve(time_machine_path, **env):
    """`streamlit run` on a free loopback port (CHARRNN_DATA_DIR, the private CHARRNN_HOME and `env` passed
    through); yields its URL; fails the test if the server printed a traceback."""
    try:
        proc, url = appserver.start(env={"CHARRNN_DATA_DIR": str(time_machine_path.parent), **env})
    except RuntimeError as e:
        pytest.fail(str(e))
    try:
        yield url
    finally:
        out = appserver.stop(proc)
        assert "Traceback" not in out, out


def settle(pg, pause_ms: int = 300):
    """Wait until the app's script run has finished (Streamlit's own e2e suite waits this way)."""
    pg.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']")
    pg.wait_for_timeout(pause_ms)


def open_page(context, url: str, title: str = "charrnn studio", timeout_ms: int = 90_000):
    """A new page of the browser context `context` at `url`, once the page titled `title` has run."""
    pg = context.new_page()
    pg.set_default_timeout(timeout_ms)
    pg.goto(url)
    pg.wait_for_selector(f"h1:has-text('{title}')")
    settle(pg)
    return pg


def new_context(browser):
    """A browser context of its own (its own session and cookies), tall enough for the whole Runs page."""
    return browser.new_context(viewport={"width": 1400, "height": 1800})


def press(pg, key: str):
    """Click the button with this widget key and wait for the script run it starts."""
    pg.locator(f".st-key-{key}").get_by_role("button").click()  # the visible one: a help tooltip has a hidden copy
    settle(pg)


def no_exception(pg):
    assert pg.locator("[data-testid='stException']").count() == 0
    assert pg.get_by_text("Traceback").count() == 0


def wait_for(pg, condition, what: str, seconds: float = 60):
    """Until `condition()` holds; a run store away for a moment (the server restarting) is asked again."""
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(StoreError):
            if condition():
                return
        assert time.monotonic() < deadline, what
        pg.wait_for_timeout(300)


def shot(pg, name: str):
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def go(pg, title: str):
    """Follow the sidebar link to a page and wait for it."""
    pg.locator("[data-testid='stSidebar'] [data-testid='stPageLink'] a", has_text=title).click()
    pg.wait_for_selector(f"h1:has-text('{title}')")
    settle(pg)


def choose(pg, label: str, option: str):
    """Pick the option containing `option` in the selectbox labelled `label`."""
    pg.locator("[data-testid='stSelectbox']", has_text=label).click()
    pg.get_by_role("option").filter(has_text=option).first.click()
    settle(pg)


def fill(pg, settings: dict):
    """Type values into labelled inputs (the Train form's fields)."""
    for label, value in settings.items():
        box = pg.get_by_label(label, exact=True)
        box.fill(str(value))
        box.press("Tab")


def record_run(corpus, name: str, base: dict, stop_after: int | None = None, **settings) -> str:
    """A run trained and recorded by the core in the current CHARRNN_HOME, as `python -m charrnn train`
    (or another session) records one: `base` settings updated by `settings`, stopped after
    `stop_after` epochs if asked, checkpointed every epoch."""
    from charrnn.runs.recorder import train_recorded
    from charrnn.runs.store import RunStore
    from charrnn.train import TrainConfig

    done = []
    stop = (lambda: len(done) >= stop_after) if stop_after else None
    config = TrainConfig(**{**base, **settings})
    run_id, _ = train_recorded(
        RunStore(), corpus, config, on_epoch=done.append, should_stop=stop, checkpoint_every=1, name=name
    )
    return run_id
