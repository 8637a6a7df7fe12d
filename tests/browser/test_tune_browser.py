"""The Tune page in a real browser: a 4-trial study of 5 epochs (tiny settings) fills the table and
Optuna's four figures live, the two held-out ones with the 5-gram's labelled line, and "Generate from it"
on the best trial generates text."""

import pytest
from support import go, settle, shot

pytestmark = pytest.mark.browser

# The Train page's settings, through a link (ui.links): what the study keeps fixed, tiny.
TINY = "num_hiddens=16&max_tokens=2000&batch_size=4&num_steps=8&val_tokens=200&eval_every=1&device=cpu"
FIGURES_WITH_DATA = """() => [...document.querySelectorAll("[data-testid='stPlotlyChart'] .js-plotly-plot")]
  .filter(el => el.data && el.data.some(trace => (trace.x || trace.y || trace.dimensions || []).length > 0)).length"""


def test_a_study_from_the_tune_page_then_generate_from_its_best_trial(server, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 2400})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{server}/train?{TINY}")
    page.wait_for_selector("h1:has-text('Train')")
    settle(page)
    go(page, "Tune")
    page.get_by_text("vary num_hiddens").click()  # fixed at the Train page's 16
    settle(page)
    for label, value in (("trials", 4), ("epochs per trial", 5)):
        box = page.get_by_label(label, exact=True)
        box.fill(str(value))
        box.press("Tab")
        settle(page)
    page.get_by_role("button", name="Start").click()
    settle(page)
    page.get_by_role("button", name="Start").wait_for()
    page.wait_for_function(
        "() => !document.querySelector(\"[data-testid='stBaseButton-primary']\")?.disabled "
        "&& document.querySelectorAll(\"[data-testid='stPlotlyChart']\").length === 4",
        timeout=300_000,
    )
    settle(page, 2500)  # the last fragment redraw
    assert page.evaluate(FIGURES_WITH_DATA) == 4
    yardstick = page.locator("[data-testid='stPlotlyChart']", has_text="5-gram (counting): ")
    assert yardstick.count() == 2  # drawn in SVG on the history and the intermediate values
    table = page.locator("[data-testid='stDataFrame']").first
    assert table.is_visible()
    shot(page, "tune-study")

    page.get_by_role("button", name="Generate from it").click()
    page.wait_for_selector("h1:has-text('Generate')")
    settle(page)
    page.get_by_role("button", name="Generate", exact=True).click()
    code = page.locator("[data-testid='stCode']", has_text="time traveller")
    code.wait_for()
    assert len(code.inner_text().strip("\n")) == len("time traveller") + 50
    shot(page, "tune-generate")
    context.close()
