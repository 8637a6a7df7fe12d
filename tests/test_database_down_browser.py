"""With the run store's server down (issue 23), every page says so in one line of its sidebar, in a real browser
(AppTest shows the sidebar of the first page only), and the pages that need no store work."""

import pytest
from support import go, serve, settle

pytestmark = pytest.mark.browser

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
