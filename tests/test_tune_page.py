"""The Tune page through AppTest: the form's errors at their fields, a study started from the page
(its table, the four figures, the best trial's card) and the card's two buttons."""

import re
import time

import pytest
from support import app, figure

from charrnn.store import RunStore

# The Train page's settings a study keeps fixed: tiny, so that a trial takes a few seconds.
TINY = dict(num_hiddens=16, max_tokens=2000, batch_size=4, num_steps=8, val_tokens=200, eval_every=1, device="cpu")
FIGURES = ("tune_history", "tune_parallel", "tune_importance", "tune_intermediate")


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch, fresh_caches):
    """A run store and a study storage per test (the default: tune.sqlite next to the runs)."""
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CHARRNN_TUNE_STORAGE", raising=False)


def tune_page(**settings):
    at = app()
    for key, value in {**{f"hp_{k}": v for k, v in TINY.items()}, **settings}.items():
        at.session_state[key] = value
    at.switch_page("pages/tune.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def start(at):
    at.button(key="tune_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def errors(at) -> list[str]:
    """The error messages shown, Markdown escapes removed (ui.literal escapes every message)."""
    return [re.sub(r"\\(.)", r"\1", e.value) for e in at.error]


FORM_ERRORS = [
    ({"tune_spec_lr": "4:0.25:log"}, "the low bound 4 is above the high bound 0.25"),
    ({"tune_spec_lr": "0:4:log"}, "a log range must stay above 0"),
    ({"tune_spec_num_hiddens": "16|lots"}, "num_hiddens takes a whole number, not 'lots'"),
    ({"tune_spec_num_hiddens": "16|9000"}, "num_hiddens=9000: num_hiddens must be at most 8,192"),
    ({"tune_vary_lr": False, "tune_vary_clip": False, "tune_vary_num_hiddens": False}, "Vary at least one"),
    ({"tune_name": "no/slashes"}, "is not a study name"),
]


@pytest.mark.parametrize(("settings", "message"), FORM_ERRORS)
def test_the_form_says_what_is_wrong_at_the_field(settings, message, time_machine_path):
    at = tune_page(**settings)
    start(at)
    shown = errors(at)
    assert len(shown) == 1 and message in shown[0], shown
    assert not at.button(key="tune_start").disabled  # nothing started


def test_an_unreachable_storage_is_named_with_its_password_masked(monkeypatch, time_machine_path):
    monkeypatch.setenv("CHARRNN_TUNE_STORAGE", "postgresql+psycopg://ann:hunter2@127.0.0.1:1/db")
    at = tune_page()
    shown = " ".join(errors(at))
    assert "Storage: cannot open postgresql+psycopg://ann:***@127.0.0.1:1/db (connection failed" in shown, shown
    assert "hunter2" not in shown
    assert not at.exception


def test_a_study_started_here_fills_the_table_figures_and_best_card(time_machine_path):
    settings = {"tune_trials": 3, "tune_epochs": 2, "tune_pruner": "none", "tune_name": "page study"}
    at = start(tune_page(**settings))
    end = time.monotonic() + 240
    while time.monotonic() < end and at.button(key="tune_start").disabled:
        time.sleep(1)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
    assert not at.button(key="tune_start").disabled, "the study did not end in time"
    assert not errors(at), errors(at)
    table = next(df.value for df in at.dataframe if "held-out perplexity" in df.value.columns)
    assert list(table["trial"]) == [0, 1, 2] and set(table["state"]) == {"COMPLETE"}
    assert list(table["epochs"]) == [2, 2, 2] and (table["held-out perplexity"] > 1).all()
    assert (table["best"] == "*").sum() == 1
    for key in FIGURES:
        assert figure(at, key)["data"], key
    runs = {r["id"]: r for r in RunStore().runs()}
    best = table[table["best"] == "*"].iloc[0]
    assert runs[best["run"]]["name"] == f"page study trial {best['trial']}"
    assert at.selectbox(key="tune_tune_study").value == "page study"

    at.button(key="tune_train_fully").click().run()  # the Train page with the trial's settings
    assert not at.exception, [e.value for e in at.exception]
    for name in ("lr", "clip", "num_hiddens"):
        assert at.session_state[f"hp_{name}"] == runs[best["run"]]["config"][name]
    assert at.session_state["hp_num_epochs"] == 500  # the recipe's budget, not the trial's 2


def test_generate_from_the_best_trial_opens_generate_on_its_run(time_machine_path):
    at = start(tune_page(tune_trials=2, tune_epochs=2, tune_pruner="none", tune_name="gen"))
    end = time.monotonic() + 180
    while time.monotonic() < end and at.button(key="tune_start").disabled:
        time.sleep(1)
        at.run()
    (best,) = [r for r in RunStore().runs() if r["status"] == "finished"][:1] or [None]
    at.button(key="tune_generate").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["gen_model"] == "saved run"
    assert at.session_state["gen_run"] in {r["id"] for r in RunStore().runs()}
    assert at.title[0].value == "Generate"
    assert best is not None


def test_stop_ends_the_trial_after_its_epoch_and_marks_it_stopped(time_machine_path):
    at = start(tune_page(tune_trials=3, tune_epochs=100_000, tune_name="stopped"))
    end = time.monotonic() + 120
    while time.monotonic() < end and not [r for r in RunStore().runs() if r["epochs"] >= 1]:
        time.sleep(0.5)
    at.run()
    assert not at.button(key="tune_stop").disabled
    at.button(key="tune_stop").click().run()
    end = time.monotonic() + 60
    while time.monotonic() < end and at.button(key="tune_start").disabled:
        time.sleep(0.5)
        at.run()
    assert not at.exception and not errors(at), errors(at)
    table = next(df.value for df in at.dataframe if "held-out perplexity" in df.value.columns)
    assert list(table["state"]) == ["FAIL"] and list(table["reason"]) == ["stopped by the user"]
    (run,) = RunStore().runs()
    assert run["status"] == "stopped" and run["epochs"] == table["epochs"][0] >= 1
