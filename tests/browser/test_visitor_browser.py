"""Issue 21 in a real Chromium, on a demo-mode server (CHARRNN_DEMO=1): a visitor's run across a reload and a
closed tab (6), the Train page's layout at 1366x768 (9), the rename picker and the sidebar as runs change
(11 a, d). AppTest cannot see these: one session id for all its instances, no cookie, no layout, no polling.
Screenshots go to artifacts/screenshots/ (gitignored)."""

import time

import pytest
from support import OWN_CHART_POINTS, choose, fill, go, open_page, serve, settle, shot

from charrnn.runs.store import RunStore

pytestmark = pytest.mark.browser
TINY = {"num_hiddens": 16, "max_tokens (0 = all)": 3000, "batch_size": 4, "num_steps": 8}
VIEW = {"width": 1366, "height": 768}


@pytest.fixture
def demo_server(time_machine_path, tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))  # this process reads the same store
    yield from serve(time_machine_path, CHARRNN_DEMO="1")


def boxes(pg, seconds: float = 30) -> dict:
    """Where the visitor's chart and live figures are (CSS px of the viewport), read once the layout holds still:
    a live run redraws its chart every second, and a box read mid-redraw is None (seen on a loaded 2-core CI)."""
    own = ".st-key-train_own"

    def read() -> dict:
        return {
            "chart": pg.locator(f"{own} [data-testid='stPlotlyChart']").bounding_box(),
            "figures": pg.locator(f"{own} .st-key-ppl_figures").bounding_box(),
        }

    end = time.monotonic() + seconds
    last = read()
    while True:
        pg.wait_for_timeout(250)
        found = read()
        if found == last and None not in found.values():
            return found
        assert time.monotonic() < end, f"the layout did not hold still: {last} then {found}"
        last = found


def in_first_screen(found: dict):
    assert found["chart"]["height"] >= 350, found["chart"]
    for name, box in found.items():
        assert box["y"] >= 0 and box["y"] + box["height"] <= VIEW["height"], (name, box)


def run_id(pg) -> str:
    caption = pg.locator(".st-key-train_own").get_by_text("Recorded in the run store as run").inner_text()
    return caption.split(" as run ")[1].split()[0]


def sidebar_run(pg) -> str:
    return pg.locator("[data-testid='stSidebar']").inner_text()


def wait_for(condition, what: str, seconds: float = 120):
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, what
        time.sleep(0.5)


def test_a_visitors_run_survives_reload_and_closed_tab_and_the_train_page_keeps_still(demo_server, browser):
    store = RunStore()
    mine = browser.new_context(viewport=VIEW)
    pg = open_page(mine, demo_server)
    go(pg, "Train")
    fill(pg, {**TINY, "num_epochs": 500})
    pg.get_by_role("button", name="Start").click()
    pg.wait_for_function(f"({OWN_CHART_POINTS})() >= 2")
    first = run_id(pg)

    # A reload is the same visitor (its cookie): the run is live on the page, and Stop works.
    pg.reload()
    pg.wait_for_selector("h1:has-text('Train')")
    pg.wait_for_function(f"({OWN_CHART_POINTS})() >= 2")
    settle(pg, 1000)
    assert "running, epoch" in sidebar_run(pg)
    training = boxes(pg)
    in_first_screen(training)
    shot(pg, "visitor-1-training-1366x768")
    pg.get_by_role("button", name="Stop", exact=True).click()
    pg.locator("[data-testid='stProgress']", has_text="stopped").wait_for()
    settle(pg, 1000)
    ended = boxes(pg)
    in_first_screen(ended)
    for name in training:  # the end moves nothing
        assert abs(training[name]["y"] - ended[name]["y"]) < 1 and training[name]["height"] == ended[name]["height"]
    assert store.run(first)["status"] == "stopped"
    shot(pg, "visitor-2-stopped-1366x768")

    # The run goes on when the tab closes, and is the visitor's on return; the private link gives it to another
    # browser, which without it sees the run read-only.
    pg.locator("[data-testid='stSidebar']").get_by_role("button", name="Your link").click()
    private = pg.locator("[data-testid='stPopover'] [data-testid='stCode'], [data-testid='stPopoverBody'] code")
    link = private.first.inner_text().strip()
    assert "/train?key=" in link
    pg.keyboard.press("Escape")
    pg.locator("[data-testid='stExpander'] summary", has_text="Settings").click()  # folded since the run
    settle(pg)
    fill(pg, {"num_epochs": 30})
    pg.get_by_role("button", name="Start").click()
    wait_for(lambda: run_id(pg) != first, "the second run did not start", 60)
    second = run_id(pg)
    assert store.run(second)["config"]["num_epochs"] == 30
    pg.close()
    wait_for(lambda: store.run(second)["status"] != "running", "the run did not end after its tab closed")
    assert (store.run(second)["status"], len(store.history(second))) == ("finished", 30)
    name = store.run(second)["name"]

    def rename_enabled(pg) -> bool:
        go(pg, "Runs")
        choose(pg, "Run", name)
        return pg.get_by_role("button", name="Rename").is_enabled()

    back = open_page(mine, demo_server)
    assert rename_enabled(back)
    other = browser.new_context(viewport=VIEW)
    stranger = open_page(other, demo_server)
    assert not rename_enabled(stranger)
    owner = open_page(other, link, "Train")
    assert rename_enabled(owner)

    # The rename picker shows the new name at once (no Refresh), marked as the visitor's.
    owner.get_by_label("Name").fill("renamed by its owner")
    owner.get_by_role("button", name="Rename").click()
    settle(owner, 500)
    picked = owner.locator("[data-testid='stSelectbox']", has_text="Run").first.locator("input").input_value()
    assert "renamed by its owner · yours" in picked, picked
    other.close()
    mine.close()


def test_the_sidebar_follows_a_book_queue(demo_server, browser):
    """Item 11a: the sidebar said "finished" while the Book page's runs trained; it now follows them."""
    context = browser.new_context(viewport=VIEW)
    pg = open_page(context, demo_server)
    go(pg, "Train")
    fill(pg, {**TINY, "num_epochs": 2})
    pg.get_by_role("button", name="Start").click()
    pg.locator("[data-testid='stProgress']", has_text="finished").wait_for()
    settle(pg, 2500)
    assert "finished after 2 of 2 epochs" in sidebar_run(pg)
    go(pg, "Book")
    epochs = pg.locator("input[aria-label='epochs per run']").first
    epochs.fill("3")
    epochs.press("Tab")
    settle(pg)
    pg.get_by_role("button", name="Run the three").click()
    wait_for(lambda: "running, epoch" in sidebar_run(pg), "the sidebar did not follow the Book's run", 60)
    pg.get_by_role("button", name="Stop").first.click()
    context.close()
