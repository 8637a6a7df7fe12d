"""The Book page (AppTest): one button queues the chapter's three runs; the table and curves fill in."""

import time

import pytest
from support import app, figure

pytestmark = pytest.mark.usefixtures("fresh_caches")


def test_book_page_queues_the_three_runs_and_fills_the_table(time_machine_path, tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    at = app()
    at.switch_page("pages/book.py").run()
    assert not at.exception
    assert any("No run yet" in i.value for i in at.info)
    at.number_input(key="book_epochs").set_value(2).run()  # the recipe's shapes, 2 epochs instead of 500
    at.button(key="book_start").click().run()
    end = time.monotonic() + 180
    while time.monotonic() < end:
        time.sleep(1)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        if not at.button(key="book_start").disabled:
            break
    assert not at.error, [e.value for e in at.error]
    table = next(df.value for df in at.dataframe if "book perplexity" in df.value.columns)
    assert list(table["run"]) == ["scratch, state carried", "scratch, state reset", "concise nn.RNN, 256 hidden"]
    assert list(table["status"]) == ["finished"] * 3 and list(table["epochs"]) == [2, 2, 2]
    assert list(table["book perplexity"]) == [1.0, 1.5, 1.3]
    assert (table["training perplexity"] > 1).all()
    assert (table["held-out (final)"] > 1).all()  # evaluated at the last epoch
    curves = figure(at, "book_curves")["data"]
    assert [c["name"] for c in curves] == ["book: " + name for name in table["run"]]
    assert all(len(c["x"]) == 2 for c in curves)
