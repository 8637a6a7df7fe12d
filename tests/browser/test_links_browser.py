"""Links in Chromium: settings changed on Train and Generate are in the address; a fresh browser
context opening that address sees the same values and, greedily, generates the same text."""

import re
import time

import pytest
from support import choose, fill, go, settle, shot

from charrnn.data import load_corpus
from charrnn.runs.recorder import train_recorded
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig

pytestmark = pytest.mark.browser

TRAIN = {"num_hiddens": "64", "lr": "0.5", "num_epochs": "123"}


def values(pg, labels) -> dict:
    return {label: pg.get_by_label(label, exact=True).input_value() for label in labels}


def generated(pg) -> str:
    pg.get_by_role("button", name="Generate", exact=True).click()
    code = pg.locator("[data-testid='stMain'] [data-testid='stCode']").first
    code.wait_for()
    settle(pg)
    return code.inner_text().strip("\n")


def test_a_link_reproduces_train_and_generate(server, browser, time_machine_path):
    corpus = load_corpus("time_machine", max_tokens=2000, download=False)
    config = TrainConfig(num_epochs=2, num_hiddens=16, batch_size=4, num_steps=8, max_tokens=2000, device="cpu")
    run_id, _ = train_recorded(RunStore(), corpus, config, name="linked run")

    a = browser.new_context(viewport={"width": 1400, "height": 1400}).new_page()
    a.set_default_timeout(60_000)
    a.goto(server)
    a.wait_for_selector("h1:has-text('charrnn studio')")
    settle(a)
    go(a, "Train")
    fill(a, TRAIN)
    settle(a)
    train_url = a.url
    assert "num_hiddens=64" in train_url and "lr=0.5" in train_url and "num_epochs=123" in train_url, train_url

    go(a, "Generate")
    a.get_by_text("saved run", exact=True).click()
    settle(a)
    choose(a, "Run", "linked run")
    fill(a, {"prefix": "the time", "characters to generate": "30"})
    settle(a)
    # The address follows each rerun; under load the last one can lag the typing (a link captured then
    # held an empty prefix): wait until it carries what was typed.
    deadline = time.monotonic() + 30
    while not (re.search(r"prefix=the(\+|%20)time", a.url) and "length=30" in a.url) and time.monotonic() < deadline:
        a.wait_for_timeout(200)
    text_a = generated(a)
    generate_url = a.url
    assert f"run={run_id}" in generate_url and "length=30" in generate_url, generate_url
    assert re.search(r"prefix=the(\+|%20)time", generate_url), generate_url
    a.locator("[data-testid='stSidebar']").get_by_text("Link to this view").click()
    assert a.locator("[data-testid='stPopoverBody'] [data-testid='stCode']").inner_text().strip() == generate_url
    shot(a, "link-generate-a")

    for url, check in ((train_url, "train"), (generate_url, "generate")):
        b = browser.new_context(viewport={"width": 1400, "height": 1400}).new_page()  # a fresh browser
        b.set_default_timeout(60_000)
        b.goto(url)
        b.wait_for_selector("h1")
        settle(b, 1000)
        assert b.locator("[data-testid='stAlert']", has_text="Link:").count() == 0
        expected = TRAIN if check == "train" else {"prefix": "the time", "characters to generate": "30"}
        deadline = time.monotonic() + 30  # a loaded machine can be slow to draw the restored values
        while values(b, list(expected)) != expected and time.monotonic() < deadline:
            b.wait_for_timeout(300)
        assert values(b, list(expected)) == expected, url
        if check == "generate":
            assert generated(b) == text_a  # greedy: the same text
            shot(b, "link-generate-b")
        b.context.close()
