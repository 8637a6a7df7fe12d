"""Issue 22: every held-out chart draws the 5-gram's figure for the run's own text and split as a labelled
line: the Train page's chart (the visitor's run and a watched one), the Runs overlay and the Book page."""

import pytest
from streamlit.testing.v1 import AppTest
from support import APP, figure, ok, record_run, wait_until_ended

from charrnn.baseline import baseline
from charrnn.data import load_corpus, split_heldout

TINY = dict(num_epochs=2, num_hiddens=16, max_tokens=2000, batch_size=4, num_steps=8, val_tokens=200, device="cpu")


def five_gram(max_tokens: int, val_tokens: int) -> float:
    """The yardstick computed here, from the library: Kneser-Ney 5-gram on the run's own split."""
    corpus = load_corpus("time_machine", "book", max_tokens, download=False)
    split = split_heldout(corpus, val_tokens)
    return baseline(split.train, split.val, 5, len(corpus.vocab), smoothing="kneser-ney").val_perplexity


def lines(fig: dict) -> list[tuple[float, str]]:
    """(y, label) of each horizontal line of a figure: Plotly keeps add_hline as a shape and an annotation."""
    ys = [s["y0"] for s in fig["layout"].get("shapes", []) if s.get("y0") == s.get("y1")]
    labels = [a["text"] for a in fig["layout"].get("annotations", [])]
    return list(zip(ys, labels, strict=False))


def test_the_runs_overlay_of_held_out_perplexity_draws_the_yardstick_of_each_split(home, time_machine_path):
    short = load_corpus("time_machine", "book", 2000, download=False)
    longer = load_corpus("time_machine", "book", 3000, download=False)
    a = record_run(short, "short", TINY)
    b = record_run(longer, "longer", {**TINY, "max_tokens": 3000})
    at = ok(AppTest.from_file(APP, default_timeout=60).run().switch_page("pages/runs.py").run())
    at.multiselect(key="runs_runs_selected").set_value([a]).run()
    assert lines(figure(ok(at), "runs_ppl")) == []  # training perplexity: no held-out yardstick
    at.radio(key="runs_metric").set_value("val_perplexity").run()
    ((y, label),) = lines(figure(ok(at), "runs_ppl"))
    assert y == pytest.approx(five_gram(2000, 200)) and label == f"5-gram (counting): {y:.2f}"
    at.multiselect(key="runs_runs_selected").set_value([a, b]).run()
    drawn = sorted(lines(figure(ok(at), "runs_ppl")))
    expected = sorted([five_gram(2000, 200), five_gram(3000, 200)])
    assert [y for y, _ in drawn] == pytest.approx(expected)
    assert all("chars, 200 held out)" in label for _, label in drawn), drawn  # two splits: each says which


def test_the_train_chart_draws_the_yardstick_of_the_runs_split(home, time_machine_path):
    at = AppTest.from_file(APP, default_timeout=60).run()
    for key, value in TINY.items():
        at.session_state[f"hp_{key}"] = value
    at.switch_page("pages/train.py").run()
    ok(at.button(key="train_start").click().run())
    wait_until_ended(at, 120)
    ((y, label),) = lines(figure(ok(at), "ppl"))
    assert y == pytest.approx(five_gram(2000, 200)) and label == f"5-gram (counting): {y:.2f}"


def test_no_held_out_text_no_yardstick(home, time_machine_path):
    at = AppTest.from_file(APP, default_timeout=60).run()
    for key, value in {**TINY, "val_tokens": 0}.items():
        at.session_state[f"hp_{key}"] = value
    at.switch_page("pages/train.py").run()
    ok(at.button(key="train_start").click().run())
    wait_until_ended(at, 120)
    assert lines(figure(ok(at), "ppl")) == []


def test_generate_and_inside_use_the_best_held_out_checkpoint_by_default_and_name_it(home, time_machine_path):
    """Issue 22: a run with held-out figures is used at its best checkpoint, not its last, and the page says
    which epoch that is; the user can still pick the last."""
    import sqlite3

    corpus = load_corpus("time_machine", "book", 2000, download=False)
    run_id = record_run(corpus, "three epochs", {**TINY, "num_epochs": 3, "eval_every": 1})
    with sqlite3.connect(home.path) as db:  # make epoch 2 the best, whatever training gave
        db.execute("UPDATE epochs SET val_perplexity = 1.5 WHERE run_id=? AND epoch=2", (run_id,))
    assert home.best_checkpoint(run_id)["epoch"] == 2
    at = AppTest.from_file(APP, default_timeout=60).run()
    for page in ("generate", "inside"):
        ok(at.switch_page(f"pages/{page}.py").run())
        picker = at.selectbox(key=f"{page}_gen_epoch")
        assert picker.value == 2, (page, picker.value)
        assert "epoch 2 (the best held-out, 1.50)" in picker.options, picker.options
    picker.set_value(3).run()
    assert ok(at).selectbox(key="inside_gen_epoch").value == 3  # the last, when picked, stays
