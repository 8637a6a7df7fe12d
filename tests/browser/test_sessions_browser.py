"""Two users at once (issue 6): one `streamlit run` server, two Playwright browser contexts.

AppTest cannot stand in here: all its instances share one session id, so they are one user.
Checks that each session sees only its own run and chart; that a second session's Start waits in a
first-in, first-out line for the device (its place and an estimated wait shown) while its Train page
lists the run on the device and may watch it read-only; that a third session that closes its tab
stays in line (a visitor's run goes on without its tab, issue 21); that the first session's Stop starts
the queued run with no click; and that a run whose tab closes while it trains goes on, listed to the
others as training elsewhere. Screenshots go to artifacts/screenshots/ (gitignored).
"""

import time

import pytest
from support import OWN_CHART_POINTS, WATCHED_CHART_POINTS, choose, fill, settle
from support import shot as save_shot

from charrnn.runs.store import RunStore

# A run that keeps going until stopped: ~2,000 tokens, a tiny model, many epochs.
TINY = {
    "num_hiddens": "16",
    "max_tokens (0 = all)": "2000",
    "batch_size": "4",
    "num_steps": "8",
    "num_epochs": "100000",
}
# Set in a page the moment any Plotly chart appears in it, from the first paint on.
RECORD_CHARTS = """
window.__chartSeen = false;
new MutationObserver(() => {
  if (document.querySelector("[data-testid='stPlotlyChart']")) window.__chartSeen = true;
}).observe(document, {subtree: true, childList: true});
"""

pytestmark = pytest.mark.browser


def shot(pg, name: str):
    save_shot(pg, f"sessions-{name}")


def user(browser, url: str):
    """A new browser context (its own cookies, so its own Streamlit session) on the Train page."""
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    context.add_init_script(RECORD_CHARTS)
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(url)
    pg.wait_for_selector("h1:has-text('charrnn studio')")
    settle(pg)
    pg.locator("[data-testid='stSidebar'] [data-testid='stPageLink'] a", has_text="Train").click()
    pg.wait_for_selector("h1:has-text('Train')")
    settle(pg)
    return context, pg


def press(pg, name: str):
    pg.get_by_role("button", name=name, exact=True).click()
    settle(pg)


def points(pg) -> int:
    return pg.evaluate(OWN_CHART_POINTS)


def own(pg):
    """The part of the Train page about this session's own run."""
    return pg.locator(".st-key-train_own")


def elsewhere(pg):
    """The part of the Train page about runs of other sessions (listed, and watched on request)."""
    return pg.locator(".st-key-train_elsewhere")


def run_id(pg) -> str:
    caption = own(pg).get_by_text("Recorded in the run store as run").inner_text()
    return caption.split(" as run ")[1].split()[0]


def queued(pg) -> str:
    """The queue notice of this session's own run ('' when there is none)."""
    notice = own(pg).locator("[data-testid='stAlert']", has_text="Queued:")
    # all_inner_texts never waits: a notice gone between a count() and an inner_text() made the latter wait 60 s
    # for it (CI, after Cancel)
    return "\n".join(notice.all_inner_texts())


def no_exception(pg):
    assert pg.locator("[data-testid='stException']").count() == 0
    assert pg.get_by_text("Traceback").count() == 0


def stop_disabled(pg) -> bool:
    return pg.get_by_role("button", name="Stop", exact=True).is_disabled()


def wait_for(pg, condition, what: str, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        pg.wait_for_timeout(500)


def test_two_sessions_keep_their_runs_apart_and_queue_fairly(server, browser):
    ctx_a, a = user(browser, server)
    ctx_b, b = user(browser, server)
    ctx_c, c = user(browser, server)
    for pg in (a, b, c):
        fill(pg, TINY)

    # A trains. B's Start puts B's run in line, in place 1; B sees nothing of A's run in its own panel.
    press(a, "Start")
    a.wait_for_function(f"({OWN_CHART_POINTS})() >= 2")
    id_a = run_id(a)
    press(b, "Queue (1 ahead)")  # the button said, before the press, that B's run would queue
    own(b).get_by_text("Queued: place 1 of 1").wait_for()
    assert "s to wait" in queued(b)  # an estimate from A's progress
    assert b.get_by_role("button", name="Cancel", exact=True).is_enabled()
    no_exception(b)
    assert not b.evaluate("window.__chartSeen"), "B's page showed a chart (A's) before B asked to watch it"
    assert own(b).get_by_text(id_a).count() == 0
    # The device is visibly A's: B's page lists A's run as training elsewhere; B may watch it, read-only.
    elsewhere(b).get_by_text("Training elsewhere").wait_for()
    choose(b, "Watch live (read-only)", id_a)
    b.wait_for_function(f"({WATCHED_CHART_POINTS})() >= 2")
    watched = b.evaluate(WATCHED_CHART_POINTS)
    b.wait_for_function(f"({WATCHED_CHART_POINTS})() > {watched}")  # live: it follows A's epochs
    assert elsewhere(b).locator("[data-testid='stButton']").count() == 0  # nothing there stops A
    shot(a, "1-a-training")
    shot(b, "2-b-queued-watching")

    # C queues behind B, then closes its tab: C's run stays in line (it goes on without its tab).
    press(c, "Queue (2 ahead)")
    own(c).get_by_text("Queued: place 2 of 2").wait_for()
    own(b).get_by_text("Queued: place 1 of 2").wait_for()
    ctx_c.close()
    b.wait_for_timeout(3000)
    assert "place 1 of 2" in queued(b), queued(b)

    # A's Stop frees the device: B's run starts by itself, with no click, and each page shows its own run.
    press(a, "Stop")
    a.locator("[data-testid='stProgress']", has_text="stopped").wait_for()
    settle(a)
    stopped_at = points(a)
    b.wait_for_function(f"({OWN_CHART_POINTS})() >= 2")
    own(b).locator("[data-testid='stAlert']", has_text="Queued:").wait_for(state="detached")
    settle(b)
    id_b = run_id(b)
    assert id_b != id_a
    b.wait_for_timeout(2500)  # a few live refreshes of B; A's chart must not move
    assert points(a) == stopped_at
    assert own(a).get_by_text(id_b).count() == 0 and own(b).get_by_text(id_a).count() == 0
    no_exception(a)
    no_exception(b)
    shot(a, "3-a-stopped")
    shot(b, "4-b-training")

    # B closes its tab while training: its run goes on (A's page lists it as training elsewhere), and A's
    # next Start waits in line behind it and C's.
    ctx_b.close()
    a.reload()
    a.wait_for_selector("h1:has-text('Train')")
    settle(a)
    elsewhere(a).get_by_text("Training elsewhere").wait_for()
    epochs = len(RunStore().history(id_b))
    wait_for(a, lambda: len(RunStore().history(id_b)) > epochs, "B's run stopped when its tab closed")
    assert RunStore().run(id_b)["status"] == "running"
    a.locator("[data-testid='stExpander'] summary", has_text="Settings").click()  # folded since A's run
    settle(a)
    press(a, "Queue (2 ahead)")
    own(a).get_by_text("Queued: place 2 of 2").wait_for()
    no_exception(a)
    shot(a, "5-a-after-b-closed")
    press(a, "Cancel")
    wait_for(a, lambda: not queued(a), "A's Cancel did not take it out of the line")
    ctx_a.close()


def test_a_link_straight_to_a_page_works(server, browser):
    """A shared link to /train on a fresh server shows the Train page, not a KeyError traceback.

    Streamlit runs pages/train.py on its own there (legacy pages/ mode, without the entry file);
    ui.via_entry sends the session through the entry file and on to the page."""
    context = browser.new_context()
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(f"{server}/train")
    pg.wait_for_selector("h1:has-text('Train')")
    settle(pg)
    shot(pg, "6-deep-link")
    no_exception(pg)
    assert pg.get_by_label("num_hiddens", exact=True).count() == 1
    context.close()
