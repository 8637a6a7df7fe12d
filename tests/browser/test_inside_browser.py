"""The Inside page in Debian's Chromium: the heatmap of hidden units, one unit over the text and the
gradient through time, drawn for a run of the store; screenshots in artifacts/screenshots/inside-*.png."""

import re

import pytest
from support import SHOTS, go, settle, shot

from charrnn.data import load_corpus
from charrnn.runs.recorder import train_recorded
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig

pytestmark = pytest.mark.browser

# A small model that learns something in seconds: the recipe's text and minibatches, 64 hidden units.
RUN = TrainConfig(num_epochs=40, num_hiddens=64, device="cpu")


def chart(pg, key: str):
    """The Plotly element of the chart with this key, once drawn."""
    el = pg.locator(f".st-key-{key} .js-plotly-plot")
    el.wait_for()
    return el


def test_inside_draws_the_units_and_the_gradients(server, browser, time_machine_path):
    corpus = load_corpus("time_machine", mode="book", max_tokens=10000, download=False)
    run_id, _ = train_recorded(RunStore(), corpus, RUN, checkpoint_every=RUN.num_epochs, name="inside demo")
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(server)
    pg.wait_for_selector("h1:has-text('charrnn studio')")
    settle(pg)
    go(pg, "Inside")
    assert pg.locator("[data-testid='stException']").count() == 0
    assert pg.get_by_text(run_id).count() >= 1  # the newest finished run, named

    heat = chart(pg, "ins_heatmap")
    rows = heat.evaluate("el => el.data[0].z.length")
    cols = heat.evaluate("el => el.data[0].z[0].length")
    assert (rows, cols) == (12, 150)
    heat.hover()  # the hover names the character, its position, the unit and the value
    hover = pg.locator(".hoverlayer .hovertext").first
    hover.wait_for()
    text = hover.text_content()  # SVG: no inner_text
    assert re.search(r"char \S+ at position \d+", text) and "unit" in text, text
    heat.screenshot(path=str(SHOTS / "inside-heatmap.png"))

    spans = pg.locator("[data-testid='stHtml'] span[title]")
    assert spans.count() == 150  # one coloured character per position
    grads = chart(pg, "ins_grads")
    grads.scroll_into_view_if_needed()
    assert grads.evaluate("el => el.data.map(d => d.name)") == ["current weights", "initial weights (seed 0)"]
    assert grads.evaluate("el => el.layout.yaxis.type") == "log"
    grads.screenshot(path=str(SHOTS / "inside-gradients.png"))
    mean = grads.evaluate("el => el.data[0].y")
    pg.get_by_text("the last step's loss alone", exact=True).click()
    changed = "first => { const el = document.querySelector('.st-key-ins_grads .js-plotly-plot'); "
    changed += "return el && el.data && el.data[0].y[0] !== first; }"
    pg.wait_for_function(changed, arg=mean[0])  # the chart is redrawn once the rerun ends
    settle(pg)
    last = grads.evaluate("el => el.data[0].y")
    assert len(last) == 35 and last != mean and last[0] < last[-1]  # what reaches 34 steps back is less
    grads.screenshot(path=str(SHOTS / "inside-gradients-last-step.png"))
    chart(pg, "ins_grad_history").screenshot(path=str(SHOTS / "inside-grad-history.png"))
    shot(pg, "inside-page")
