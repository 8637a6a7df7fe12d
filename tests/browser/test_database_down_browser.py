"""With the run store's server down (issue 23), every page says so in one line of its sidebar, in a real browser
(AppTest shows the sidebar of the first page only), and the pages that need no store work."""

import time

import pytest
from support import WATCHED_CHART_POINTS, choose, cli_train, go, serve, settle

from charrnn.runs.store import RunStore

pytestmark = pytest.mark.browser

TINY = ["--num-hiddens", "16", "--max-tokens", "2000", "--batch-size", "4", "--num-steps", "8", "--device", "cpu"]
DOWN = "postgresql://charrnn:s3cret-pw@127.0.0.1:9/runs"  # port 9: nothing listens


@pytest.fixture
def down_server(time_machine_path):
    yield from serve(time_machine_path, CHARRNN_DATABASE_URL=DOWN)


def test_every_page_says_the_store_is_down_and_data_works(down_server, browser):
    pg = browser.new_page(viewport={"width": 1366, "height": 768})
    pg.goto(down_server)
    pg.wait_for_selector("h1:has-text('charrnn studio')")
    settle(pg)
    for title in ("Data", "Train", "Generate", "Runs", "Book", "Inside"):
        go(pg, title)
        said = pg.locator("[data-testid='stSidebar'] [data-testid='stAlert']").all_inner_texts()
        assert len(said) == 1 and "Run store unavailable" in said[0] and "s3cret-pw" not in said[0], (title, said)
        assert pg.locator("[data-testid='stException']").count() == 0, title
    go(pg, "Data")
    assert pg.locator("[data-testid='stMain'] [data-testid='stAlert']").count() == 0  # Data needs no store
    assert pg.get_by_text("Vocabulary", exact=False).count() > 0


def test_pages_watching_a_run_ride_out_a_server_that_goes_away(postgres_cluster, tmp_path, time_machine_path, browser):
    """The server stops while a CLI run trains and B's pages look at it: the Runs table (redrawn every 3 s) and the
    watch view (every second) say the store cannot be read, without a traceback, and carry on once it is back."""
    url = postgres_cluster.database(f"away_{tmp_path.name[-20:].lower()}")
    server = serve(time_machine_path, CHARRNN_HOME=str(tmp_path / "b"), CHARRNN_DATABASE_URL=url)
    b = next(server)
    train = cli_train(tmp_path / "a", *TINY, "--epochs", "100000", "--database", url)
    try:
        store = RunStore(tmp_path / "b", url)
        deadline = time.monotonic() + 60
        while not store.runs():
            assert train.poll() is None and time.monotonic() < deadline, train.stderr.read()
            time.sleep(0.3)
        run_id = store.runs()[0]["id"]
        watching, listing = (browser.new_page(viewport={"width": 1400, "height": 1400}) for _ in range(2))
        watching.goto(f"{b}/train")
        settle(watching)
        choose(watching, "Watch live (read-only)", run_id)
        watching.wait_for_function(f"({WATCHED_CHART_POINTS})() >= 2", timeout=60_000)
        listing.goto(f"{b}/runs")
        settle(listing)
        postgres_cluster.halt()
        try:
            for pg in (watching, listing):
                pg.get_by_text("The run store cannot be read just now", exact=False).first.wait_for(timeout=30_000)
                assert pg.locator("[data-testid='stException']").count() == 0
        finally:
            postgres_cluster.resume()
        before = watching.evaluate(f"({WATCHED_CHART_POINTS})()")
        watching.wait_for_function(f"({WATCHED_CHART_POINTS})() > {before}", timeout=60_000)
        for pg in (watching, listing):
            pg.get_by_text("The run store cannot be read just now", exact=False).first.wait_for(
                state="detached", timeout=30_000
            )
            assert pg.locator("[data-testid='stException']").count() == 0
        assert train.poll() is None  # the run trained through it
    finally:
        train.kill()
        server.close()  # stops the app server; fails the test if it printed a traceback
