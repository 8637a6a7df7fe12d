"""Chapter 9's runs in Debian's Chromium: a tiny GRU run and a tiny deep LSTM run, recorded by the core into
a fresh run store, are listed by Runs with their cells, and Generate and Inside open each of them without
an error; screenshots in artifacts/screenshots/chapter9-*.png."""

import pytest
from support import choose, go, record_run, settle, shot

from charrnn.data import load_corpus

pytestmark = pytest.mark.browser

TINY = dict(num_epochs=2, num_hiddens=16, max_tokens=2000, batch_size=4, num_steps=8, val_tokens=200, device="cpu")
# name -> (settings, how the pages name the model)
RUNS = {
    "tiny gru": (dict(cell="gru"), "a scratch gru, num_hiddens 16"),
    "tiny lstm": (dict(cell="lstm", num_layers=2, dropout=0.2, model="concise"), "a 2-layer concise lstm"),
}


@pytest.fixture
def app_url(tmp_path, monkeypatch, time_machine_path, request):
    """The two runs recorded into a fresh CHARRNN_HOME, then conftest's app server on that store; its URL."""
    home = tmp_path / "home"
    monkeypatch.setenv("CHARRNN_HOME", str(home))  # the server inherits this process's environment
    corpus = load_corpus("time_machine", mode="book", max_tokens=2000, download=False)
    for name, (settings, _) in RUNS.items():
        record_run(corpus, name, TINY, **settings)
    return request.getfixturevalue("server")


def no_exception(pg):
    assert pg.locator("[data-testid='stException']").count() == 0
    assert pg.get_by_text("Traceback").count() == 0


def test_runs_generate_and_inside_open_a_gru_and_an_lstm_run(app_url, browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1400})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(app_url)
    pg.wait_for_selector("h1:has-text('charrnn studio')")
    settle(pg)
    go(pg, "Runs")
    no_exception(pg)
    grid = pg.locator("[data-testid='stDataFrame']").first  # drawn on a canvas: its columns are read from its menu
    grid.hover()
    grid.get_by_role("button", name="Show/hide columns").click()
    menu = pg.locator("[data-testid='stDataFrameColumnVisibilityMenu']")
    columns = [c.strip() for c in menu.inner_text().splitlines() if c.strip()]
    model = columns.index("model")
    assert columns[model : model + 4] == ["model", "cell", "layers", "dropout"], columns
    shot(pg, "chapter9-runs")
    pg.keyboard.press("Escape")

    for name, (_, described) in RUNS.items():
        go(pg, "Runs")
        choose(pg, "Run", name)
        pg.get_by_text(described).first.wait_for()  # the run's model, under its status
        pg.get_by_role("button", name="Generate from it").first.click()
        pg.wait_for_selector("h1:has-text('Generate')")
        settle(pg)
        no_exception(pg)
        assert pg.get_by_text(f"The model: {described}").count() == 1
        pg.get_by_role("button", name="Generate", exact=True).click()
        settle(pg)
        no_exception(pg)
        assert "time traveller" in pg.locator("[data-testid='stCode']").first.inner_text()
        shot(pg, f"chapter9-generate-{name.split()[-1]}")

        go(pg, "Inside")  # the same run: Generate and Inside share the model picker's setting
        no_exception(pg)
        pg.get_by_text(f"Looking inside run {name}").first.wait_for()
        settle(pg)
        no_exception(pg)
        gates = pg.locator(".st-key-inside_ins_show").inner_text()  # the top layer's H and its cell's gates
        expected = ["update gate Z", "reset gate R"] if "gru" in name else ["forget gate F", "memory cell C"]
        assert "hidden state H" in gates and all(g in gates for g in expected), gates
        shot(pg, f"chapter9-inside-{name.split()[-1]}")

    go(pg, "Book")  # chapter 9's section beside chapter 8's: its five runs, ready to queue
    no_exception(pg)
    pg.get_by_role("heading", name="Chapter 9: GRU, LSTM and a deep LSTM").wait_for()
    assert pg.get_by_text("nn.GRU").count() >= 1
    shot(pg, "chapter9-book")
    context.close()
