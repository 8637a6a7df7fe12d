"""Issue 21, what a visitor trips over (AppTest): whose runs (6), the model a page uses (7), Generate's results
(8), Start that says it will queue (10), labels that tell the truth (11).

Runs are made by the real core (`record_run`, a few tiny epochs) in a store of their own; a fresh AppTest is
a new browser (no cookie). The browser-only halves (reload, a closed tab, layout) are in
tests/browser/test_visitor_browser.py."""

import re
import time

import pytest
import torch
from streamlit.testing.v1 import AppTest
from support import APP, figure, ok, record_run, wait

from charrnn.device import resolve_device
from ui.training import device_lock

TINY = dict(num_epochs=2, num_hiddens=16, max_tokens=2000, batch_size=4, num_steps=8, device="cpu")


def fresh(page: str, **params) -> AppTest:
    """A new browser on `page`, its address carrying `params`."""
    at = ok(AppTest.from_file(APP, default_timeout=60).run())
    at.query_params.update(params)
    return ok(at.switch_page(f"pages/{page}.py").run())


def plain(elements) -> list[str]:
    """What the user reads (ui.literal escapes Markdown with backslashes)."""
    return [re.sub(r"\\(.)", r"\1", e.value) for e in elements]


def link(at: AppTest) -> dict:
    return {k: v[0] if isinstance(v, list) else v for k, v in at.query_params.items()}


def train(at: AppTest, **settings) -> AppTest:
    for key, value in {**TINY, **settings}.items():
        at.session_state[f"hp_{key}"] = value
    at.switch_page("pages/train.py").run()
    return ok(at.button(key="train_start").click().run())


def test_a_visitors_runs_stay_theirs_through_the_key_and_read_only_to_others(home, corpus, monkeypatch):
    """Item 6: the runs a key started are its own after the server forgot the runner; a new browser is
    another visitor, and the private link (?key=) makes it the owner."""
    monkeypatch.setenv("CHARRNN_DEMO", "1")
    at = train(ok(AppTest.from_file(APP, default_timeout=60).run()))
    wait(at, lambda: home.runs() and home.runs()[0]["status"] == "finished", "the run")
    key, (run,) = at.session_state["visitor_key"], home.runs()
    import streamlit as st

    st.cache_resource.clear()  # the runner registry is gone, as after the tab closed and an hour passed

    def buttons(at):
        at.switch_page("pages/runs.py").run()
        ok(at.selectbox(key="runs_one").set_value(run["id"]).run())
        return [at.button(key=k).disabled for k in ("runs_rename", "runs_del")]

    assert buttons(fresh("data")) == [True, True]  # another browser: read-only
    owner = fresh("runs", key=key)  # the private link
    assert buttons(owner) == [False, False] and "key" not in link(owner)  # the address drops it at once
    assert any(o.endswith("· yours") for o in owner.selectbox(key="runs_one").options)


def test_the_chosen_model_is_named_pinned_in_the_link_and_stays(home, corpus):
    """Item 7: Generate and Inside name the run and checkpoint they use; a run finishing elsewhere does not
    replace it; the same link shows the same model in a new browser."""
    first = record_run(corpus, "first", TINY)
    at = fresh("generate")
    named = f"run first (id {first}), checkpoint of epoch 2 (the last"
    assert any(named in c for c in plain(at.caption)), plain(at.caption)
    assert link(at)["run"] == first and link(at)["epoch"] == "2"
    record_run(corpus, "newer", TINY)  # finishes elsewhere (the CLI, another tab)
    ok(at.run())
    assert any(named in c for c in plain(at.caption)) and link(at)["run"] == first
    ok(at.switch_page("pages/inside.py").run())
    assert any(f"Looking inside run first (id {first}), checkpoint of epoch 2" in c for c in plain(at.caption))

    again = fresh("generate", run=first, epoch="1")  # a reload of a link that names the first epoch
    assert any(f"run first (id {first}), checkpoint of epoch 1" in c for c in plain(again.caption))
    assert link(again) == {"run": first, "epoch": "1"}


def test_results_are_ready_on_arrival_and_marked_out_of_date_when_an_input_changes(home, corpus):
    """Item 8: "Generate from it" lands on a continuation of that run, with no click; a change of
    decoding marks the greedy result out of date (and draws no chart for it)."""
    record_run(corpus, "other", TINY)
    run_id = record_run(corpus, "picked", TINY)
    at = ok(AppTest.from_file(APP, default_timeout=60).run())
    at.switch_page("pages/runs.py").run()
    ok(at.selectbox(key="runs_one").set_value(run_id).run())
    ok(at.button(key="runs_generate").click().run())  # the Tune page's button sets the same settings
    assert [t.value for t in at.title] == ["Generate"]
    at.switch_page("pages/generate.py")
    assert at.session_state["gen_run"] == run_id
    assert at.code and at.code[0].value.startswith("time traveller") and not at.warning
    figure(at, "gen_probs")  # the current result's chart

    ok(at.radio(key="generate_gen_decoding").set_value("sampling").run())
    assert any("Out of date: made with another decoding" in w for w in plain(at.warning)), plain(at.warning)
    assert "gen_probs" not in [el.proto.id.rsplit("-", 1)[-1] for el in at.get("plotly_chart")]
    ok(at.button(key="gen_go").click().run())
    assert not at.warning
    figure(at, "gen_probs")


def test_start_says_the_run_will_queue_and_the_labels_follow_the_run(home, corpus):
    """Items 10 and 11 (b, c): before Start, "Queue (1 ahead)" and a caption; the settings line says what
    differs from the recipe once a field changes; while queued the label says so, not "trains"."""
    line = device_lock(str(resolve_device("auto")))
    assert line.try_acquire("another visitor's run")
    try:
        at = ok(AppTest.from_file(APP, default_timeout=60).run())
        at.switch_page("pages/train.py").run()
        assert any("the book's recipe." in c for c in plain(at.caption)), plain(at.caption)
        assert at.button(key="train_start").label == "Queue (1 ahead)"
        assert any("your run will wait in line behind 1 run" in c for c in plain(at.caption))
        ok(at.number_input(key="train_hp_lr").set_value(0.5).run())
        assert any("Settings: the book's recipe but lr 0.5." in c for c in plain(at.caption)), plain(at.caption)
        assert all("recipe" not in e.label for e in at.expander)
        train(at, num_epochs=400)
        assert at.expander[0].label.startswith("Settings (Start is off while your run waits in line")
    finally:
        line.release()
    wait(at, lambda: "while your run trains" in at.expander[0].label, "the start after the queue")
    ok(at.button(key="train_stop").click().run())
    wait(at, lambda: at.expander[0].label == "Settings", "the stop")


def long_run(corpus):
    """The visitor's runner, training a run of their own that lasts until stopped."""
    from charrnn.runs.runner import Runner
    from charrnn.train import TrainConfig

    runner = Runner()
    assert runner.start(corpus, TrainConfig(**{**TINY, "num_epochs": 100_000}))
    return runner


def still_training(runner, why: str):
    """Assert that `runner` still trains half a second later (a stop takes effect within that), then end it."""
    time.sleep(0.5)
    assert runner.running(), why
    runner.stop()
    runner.join(30)


def test_an_ended_book_chain_stopped_later_leaves_the_visitors_own_run(home, corpus):
    """The visitor's Book queue keeps their runner after its chain ends (a tab's end used to stop it): its
    stop must not reach a Train run they started since."""
    from ui.book import BookQueue

    runner = long_run(corpus)
    queue = BookQueue()
    queue.runner = runner  # as after a chain of Book runs that has ended
    queue.stop()
    still_training(runner, "stopping an ended Book chain stopped the visitor's Train run")


def test_a_trial_that_cannot_start_leaves_the_run_that_holds_the_runner(home, corpus):
    """Tune between two trials while the visitor's Start (another tab) took the runner: the trial fails,
    and neither it nor the study's stop ends the visitor's run."""
    from charrnn.train import TrainConfig
    from charrnn.tune.plan import Search
    from charrnn.tune.space import parse_space
    from charrnn.tune.tuner import Tuner

    runner = long_run(corpus)
    base = TrainConfig(**{**TINY, "val_tokens": 200})
    search = Search("busy", parse_space("lr=0.5:2"), base, trials=1, storage=f"sqlite:///{home.home / 't.db'}")
    tuner = Tuner(search, corpus, runner=runner)
    tuner.prepare(torch.device("cpu"))
    with pytest.raises(RuntimeError, match="already training"):  # the app's job shows it and ends the study
        tuner.run()
    assert [t.state.name for t in tuner.study.trials] == ["FAIL"]
    tuner.stop()
    still_training(runner, "a trial that never started stopped the visitor's run")


def test_a_private_link_never_silently_takes_over_a_browser_that_owns_runs(home, corpus):
    """Opening another visitor's link (sent by anyone) in a browser with runs of its own asks first; the key
    leaves the address at once on every page."""
    from charrnn.runs import demo

    mine, theirs = "a" * 32, "b" * 32
    demo.claim(record_run(corpus, "my run", TINY), mine)
    at = fresh("runs", key=mine)  # a new browser: it simply becomes the link's visitor
    assert at.session_state["visitor_key"] == mine and "key" not in link(at)
    at.query_params["key"] = theirs
    ok(at.switch_page("streamlit_app.py").run())  # Home: the key is read (and dropped) there too
    assert at.session_state["visitor_key"] == mine and "key" not in link(at)
    assert any("belongs to another visitor's runs" in w for w in plain(at.warning))
    ok(at.button(key="visitor_keep").click().run())
    assert at.session_state["visitor_key"] == mine and not any("another visitor" in w for w in plain(at.warning))
    at.query_params["key"] = theirs
    ok(at.run())
    ok(at.button(key="visitor_take_link").click().run())
    assert at.session_state["visitor_key"] == theirs
