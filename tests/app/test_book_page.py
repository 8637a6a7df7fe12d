"""The Book page (AppTest): one button per chapter queues its runs (8: three, 9: five); the table and curves
fill in."""

import time

import pytest
from support import app, figure

from charrnn.book import CHAPTER_9
from charrnn.runs.store import RunStore

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


def test_book_page_queues_chapter_9s_five_runs_with_the_books_settings(time_machine_path, tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    at = app()
    at.session_state["hp_device"] = "cpu"
    at.switch_page("pages/book.py").run()
    assert not at.exception
    assert sum("No run yet" in i.value for i in at.info) == 2  # one per chapter
    assert any("Chapter 9" in h.value for h in at.header)
    text = " ".join(m.value for m in at.markdown)
    assert "reset gate after" in text and "different function" in text  # the concise GRU is torch's variant
    at.number_input(key="book9_epochs").set_value(2)
    at.button(key="book9_start").click().run()
    assert at.button(key="book_start").disabled  # one runner per session: chapter 8 waits
    end = time.monotonic() + 300
    while time.monotonic() < end:
        time.sleep(1)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        if not at.button(key="book9_start").disabled:
            break
    assert not at.error, [e.value for e in at.error]
    assert not at.button(key="book_start").disabled
    table = next(df.value for df in at.dataframe if "within 0.3" in df.value.columns)
    assert list(table["run"]) == [e.name for e in CHAPTER_9]
    assert list(table["status"]) == ["finished"] * 5 and list(table["epochs"]) == [2] * 5
    assert list(table["book perplexity"]) == [1.1, 1.1, 1.3, 1.2, 1.0]
    assert list(table["within 0.3"]) == ["no"] * 5  # two epochs are far from the book's figures
    assert any(c.value.startswith("0 of 5 finished runs within 0.3") for c in at.caption)
    assert (table["held-out (final)"] > 1).all()
    store = RunStore(tmp_path / "home")
    runs = sorted(store.runs(), key=lambda r: r["created"])
    assert [r["name"] for r in runs] == ["book: " + name for name in table["run"]]
    settings = [tuple(r["config"][k] for k in ("cell", "model", "num_layers", "lr")) for r in runs]
    assert settings == [
        ("gru", "scratch", 1, 1.0),
        ("gru", "concise", 1, 1.0),
        ("lstm", "scratch", 1, 1.0),
        ("lstm", "concise", 1, 1.0),
        ("lstm", "concise", 2, 2.0),
    ]  # the book's, in its order
    curves = figure(at, "book9_curves")["data"]
    assert [c["name"] for c in curves] == ["book: " + name for name in table["run"]]
    assert all(len(c["x"]) == 2 for c in curves)
    at.radio(key="book9_metric").set_value("val_perplexity").run()
    curves = figure(at, "book9_curves")["data"]  # held-out: evaluated at the last epoch only (eval_every 10)
    assert [c["name"] for c in curves] == ["book: " + name for name in table["run"]]
    assert all(c["x"] == [2] for c in curves)
