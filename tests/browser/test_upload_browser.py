"""Uploads through the real `st.file_uploader` widgets, in Debian's Chromium (issue 6).

AppTest cannot drive a file uploader (the other upload tests seed session state the way the Data
page stores an upload); here the bytes go through the browser, the widget and the server.
"""

import pytest
from support import go, settle, shot

pytestmark = pytest.mark.browser

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00"
MiB = 2**20


def upload(pg, name: str, data: bytes, until: str):
    """Drop one file on the page's file uploader, wait until the element `until` (a CSS selector)
    mentions the file (a large file takes a while to send), then for the rerun to end."""
    box = pg.locator("[data-testid='stFileUploaderDropzoneInput']")
    box.set_input_files(files=[{"name": name, "mimeType": "text/plain", "buffer": data}])
    pg.locator(until, has_text=name).first.wait_for()
    settle(pg)


def alerts(pg) -> list[str]:
    return [a.inner_text() for a in pg.locator("[data-testid='stAlert']").all()]


def no_exception(pg):
    assert pg.locator("[data-testid='stException']").count() == 0
    assert pg.get_by_text("Traceback").count() == 0


def test_uploads_through_the_widget(server, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(server)
    pg.wait_for_selector("h1:has-text('charrnn studio')")
    settle(pg)
    go(pg, "Data")
    pg.locator("[data-testid='stSelectbox']", has_text="Corpus source").click()
    pg.get_by_role("option", name="Uploaded .txt").click()
    settle(pg)
    pg.get_by_text("raw", exact=True).click()  # every character kept
    settle(pg)

    # Bytes that are no text: one error naming the file and the fix, nothing else on the page.
    upload(pg, "picture.txt", PNG, "[data-testid='stAlert']")
    no_exception(pg)
    (msg,) = alerts(pg)
    assert "picture.txt" in msg and "binary" in msg and "UTF-8 .txt" in msg, msg
    shot(pg, "upload-1-binary")

    # Over the core's 20 MiB limit but under the widget's 25 MiB: the core refuses it with numbers.
    upload(pg, "big.txt", b"the time traveller\n" * (21 * MiB // 19 + 1), "[data-testid='stAlert']")
    no_exception(pg)
    (msg,) = alerts(pg)
    assert "big.txt" in msg and "the limit is 20 MiB" in msg, msg

    # Over the widget's own limit (server.maxUploadSize = 25): the widget refuses it; the page keeps
    # the last file it accepted, so the core's message stays.
    upload(pg, "huge.txt", b"x" * (26 * MiB), "[data-testid='stFileUploader']")
    no_exception(pg)
    pg.locator("[data-testid='stFileChipIconError']").wait_for()  # its chip is marked refused
    assert pg.locator("[data-testid='stFileChipIconError']").count() == 1
    assert any("big.txt" in a for a in alerts(pg))

    # A good text, shown as text: Markdown and HTML in it are not rendered.
    text = "**bold** <b>tag</b> [link](http://x) the time traveller\n" * 100
    upload(pg, "good.txt", text.encode(), "[data-testid='stText']")
    no_exception(pg)
    assert alerts(pg) == []
    vocab = pg.locator("[data-testid='stMetric']", has_text="Vocab size").inner_text().split()[-1]
    assert int(vocab) == len(set(text)) + 1  # every character and <unk>
    assert pg.get_by_text("**bold** <b>tag</b>").count() >= 1
    assert pg.locator("[data-testid='stMain'] b").count() == 0
    # The minibatch fields were missing while no text was usable; back, they show the settings in
    # use (the recipe's), not their minimum (a remounted widget starts at its default).
    assert pg.get_by_label("batch_size", exact=True).input_value() == "32"
    assert pg.get_by_label("num_steps", exact=True).input_value() == "35"
    assert pg.get_by_text("(32, 35)").count() == 1
    shot(pg, "upload-2-good")

    # A checkpoint that is random bytes, on the Runs page's uploader: refused, nothing breaks.
    go(pg, "Runs")
    upload(pg, "junk.pt", bytes(range(256)) * 64, "[data-testid='stAlert']")
    no_exception(pg)
    assert any(a.startswith("Checkpoint file:") for a in alerts(pg)), alerts(pg)
    shot(pg, "upload-3-bad-checkpoint")
    context.close()
