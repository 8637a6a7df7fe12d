"""The Tune page through AppTest: the form's errors at their fields, a study started from the page
(its table, the four figures, the best trial's card) and the card's two buttons."""

import re
import time

import pytest
from support import app, figure

from charrnn import demo
from charrnn.store import RunStore
from charrnn.train import TrainConfig

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
    (
        {"tune_vary_cell": True, "tune_spec_cell": "rnn|transformer"},
        "cell takes one of rnn, gru, lstm, not 'transformer'",
    ),
    ({"tune_vary_num_layers": True, "tune_spec_num_layers": "0:2"}, "num_layers=0: num_layers must be a whole number"),
    ({"tune_vary_num_layers": True, "tune_spec_num_layers": "1|two"}, "num_layers takes a whole number, not 'two'"),
    ({"tune_vary_dropout": True, "tune_spec_dropout": "0:0.99"}, "dropout=0.99: dropout must be a probability"),
]


@pytest.mark.parametrize(("settings", "message"), FORM_ERRORS)
def test_the_form_says_what_is_wrong_at_the_field(settings, message, time_machine_path):
    at = tune_page(**settings)
    start(at)
    shown = errors(at)
    assert len(shown) == 1 and message in shown[0], shown
    assert not at.button(key="tune_start").disabled  # nothing started
    varied = [k.removeprefix("tune_spec_") for k in settings if k.startswith("tune_spec_")]
    for name in varied:  # the error sits under that field's own box, in its row
        row = next(c for c in at.columns if any(t.key == f"tune_tune_spec_{name}" for t in c.text_input))
        assert [e.value for e in row.error] == [at.error[0].value], name


def test_demo_caps_apply_to_the_largest_model_the_space_gives(monkeypatch, time_machine_path):
    """In demo mode a 4-layer LSTM of 512 is over the model-size cap while one layer is not: a space
    whose num_layers reaches 4 is refused under Start with the cap's message for its largest model."""
    monkeypatch.setenv("CHARRNN_DEMO", "1")
    fixed = {**TINY, "num_hiddens": 512, "cell": "lstm"}
    assert not demo.check_caps(TrainConfig(**fixed))  # one layer: within the caps
    expected = demo.check_caps(TrainConfig(**fixed, num_layers=4))
    assert expected, "this demo no longer caps a 4-layer LSTM of 512"
    form = {"tune_vary_num_hiddens": False, "tune_vary_num_layers": True, "tune_spec_num_layers": "1:4"}
    at = start(tune_page(hp_num_hiddens=512, hp_cell="lstm", **form))
    assert errors(at) == expected
    assert not at.button(key="tune_start").disabled


def test_an_unreachable_storage_is_named_with_its_password_masked(monkeypatch, time_machine_path):
    monkeypatch.setenv("CHARRNN_TUNE_STORAGE", "postgresql+psycopg://ann:hunter2@127.0.0.1:1/db")
    at = tune_page()
    shown = " ".join(errors(at))
    assert "Storage: cannot open postgresql+psycopg://ann:***@127.0.0.1:1/db (connection failed" in shown, shown
    assert "hunter2" not in shown
    assert not at.exception


def test_a_study_started_here_fills_the_table_figures_and_best_card(time_machine_path):
    """Three trials over lr, clip, num_hiddens, cell and num_layers: the table shows each trial's cell
    and layers, as its run trained them."""
    settings = {"tune_trials": 3, "tune_epochs": 2, "tune_pruner": "none", "tune_name": "page study"}
    settings |= {"tune_vary_cell": True, "tune_vary_num_layers": True, "tune_spec_num_layers": "1|2"}
    settings |= {"tune_spec_num_hiddens": "8|16"}  # tiny: a 2-layer LSTM of 1024 would take minutes here
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
    trained = [(runs[r]["config"]["cell"], runs[r]["config"]["num_layers"]) for r in table["run"]]
    assert list(zip(table["cell"], table["layers"], strict=True)) == trained
    best = table[table["best"] == "*"].iloc[0]
    assert runs[best["run"]]["name"] == f"page study trial {best['trial']}"
    assert at.selectbox(key="tune_tune_study").value == "page study"

    at.button(key="tune_train_fully").click().run()  # the Train page with the trial's settings
    assert not at.exception, [e.value for e in at.exception]
    for name in ("lr", "clip", "num_hiddens", "cell", "num_layers"):
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
    """A 2-layer GRU fixed on the Train page: the table's cell and layers columns show it."""
    settings = {"hp_cell": "gru", "hp_num_layers": 2, "tune_spec_num_hiddens": "8|16"}
    at = start(tune_page(tune_trials=3, tune_epochs=100_000, tune_name="stopped", **settings))
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
    assert (list(table["cell"]), list(table["layers"])) == (["gru"], [2])
    (run,) = RunStore().runs()
    assert run["status"] == "stopped" and run["epochs"] == table["epochs"][0] >= 1
