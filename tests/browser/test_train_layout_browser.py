"""The Train page at 1366x768 while a run trains: the live chart starts within the first screen."""

import pytest
from support import OWN_CHART_POINTS, fill, go, settle, shot

pytestmark = pytest.mark.browser


def test_live_chart_is_in_view_while_training(server, browser):
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(server)
    pg.wait_for_selector("h1:has-text('charrnn studio')")
    settle(pg)
    go(pg, "Train")
    chart = pg.locator(".st-key-train_own [data-testid='stPlotlyChart']")
    fill(pg, {"num_hiddens": 32, "num_epochs": 100_000, "max_tokens (0 = all)": 3000})
    pg.get_by_role("button", name="Start").click()
    pg.wait_for_function(f"({OWN_CHART_POINTS})() >= 2", timeout=60_000)
    settle(pg, 1000)
    top = chart.bounding_box()["y"]
    shot(pg, "train-1366x768-running")
    assert top < 768, f"the chart starts at {top:.0f} px, below the first screen"
    legend = [t.text_content() for t in chart.locator(".legendtext").all()]
    assert legend[:1] == ["training"], legend
    pg.get_by_role("button", name="Stop").click()
    pg.locator("[data-testid='stProgress']", has_text="stopped").wait_for()
    settle(pg)
    assert not pg.get_by_label("num_hiddens", exact=True).is_visible()  # folded still: the end moves nothing
    context.close()
