"""The dashboard in a real browser: Debian's Chromium, headless, against `streamlit run`.

Screenshots of every page go to artifacts/screenshots/ (gitignored) for people to look at.
"""

import pytest
from support import OWN_CHART_POINTS, fill, go, settle, shot

PAGES = {"Home", "Data", "Train", "Generate", "Runs", "Book", "Inside", "Tune"}
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

pytestmark = pytest.mark.browser


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 2000})
    context.add_init_script(RECORD_NAV)
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    context.close()


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
    fill(page, {"num_hiddens": 64, "num_epochs": 2000})
    page.get_by_role("button", name="Start").click()
    page.wait_for_function(f"({OWN_CHART_POINTS})() >= 2", timeout=60_000)
    page.wait_for_timeout(1500)  # one more live refresh, for the screenshot
    shot(page, "3-train-running")
    page.get_by_role("button", name="Stop").click()
    page.locator("[data-testid='stProgress']", has_text="stopped").wait_for()
    settle(page)
    points = page.evaluate(OWN_CHART_POINTS)
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
