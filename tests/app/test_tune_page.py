"""The Tune page through AppTest: the form's errors at their fields, a study started from the page
(its table and the four figures beside the 5-gram yardstick, the best trial's card) and the card's two
buttons, "Generate from it" landing on the best trial's best checkpoint."""

import re
import time

import pytest
from support import app, figure

from charrnn.baseline import baseline
from charrnn.data import load_corpus, split_heldout
from charrnn.runs import demo
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig
from charrnn.tune.space import MAX_LINE

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
    return plain(at.error)


def plain(elements) -> list[str]:
    """The texts of these elements (errors, captions, warnings), Markdown escapes removed."""
    return [re.sub(r"\\(.)", r"\1", e.value) for e in elements]


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
    ({"tune_vary_optimizer": True}, "optimizer varies: give each optimizer its learning-rate range (lr_sgd, lr_adam)"),
    ({"tune_vary_lr_adam": True, "tune_vary_lr": False}, "lr_adam is the lr of adam trials, but every trial uses sgd"),
    ({"tune_vary_weight_decay": True, "tune_spec_weight_decay": "0:2"}, "weight_decay=2.0: weight_decay must be 0"),
    ({"tune_vary_max_tokens": True, "tune_spec_max_tokens": "0:5000"}, "0 means the whole text; list choices"),
    ({"tune_spec_num_hiddens": "|".join(map(str, range(1, 10_001)))}, "num_hiddens lists 10,000 choices, at most 100"),
]


@pytest.mark.parametrize(("settings", "message"), FORM_ERRORS)
def test_the_form_says_what_is_wrong_at_the_field(settings, message, time_machine_path):
    at = tune_page(**settings)
    start(at)
    shown = errors(at)
    assert len(shown) == 1 and message in shown[0] and len(shown[0]) <= MAX_LINE, [e[:400] for e in shown]
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


def five_gram() -> float:
    """The 5-gram's held-out perplexity on TINY's split (the first 2,000 chars, the 200 after them)."""
    corpus = load_corpus("time_machine", "book", TINY["max_tokens"], download=False)
    split = split_heldout(corpus, TINY["val_tokens"])
    return baseline(split.train, split.val, 5, len(corpus.vocab), smoothing="kneser-ney").val_perplexity


def test_a_study_started_here_fills_the_table_figures_and_best_card(time_machine_path):
    """Three trials over lr, clip, num_hiddens, cell and num_layers: the table shows each trial's cell
    and layers, as its run trained them, and the 5-gram's figure on the same held-out text, which the
    held-out charts draw as a labelled line."""
    settings = {"tune_trials": 3, "tune_epochs": 2, "tune_pruner": "none", "tune_name": "page study"}
    settings |= {"tune_vary_cell": True, "tune_vary_num_layers": True, "tune_spec_num_layers": "1|2"}
    settings |= {"tune_spec_num_hiddens": "8|16"}  # tiny: a 2-layer LSTM of 1024 would take minutes here
    at = start(tune_page(**settings))
    wait_for_the_study(at)
    assert not errors(at), errors(at)
    table = next(df.value for df in at.dataframe if "held-out perplexity" in df.value.columns)
    assert list(table["trial"]) == [0, 1, 2] and set(table["state"]) == {"COMPLETE"}
    assert list(table["epochs"]) == [2, 2, 2] and (table["held-out perplexity"] > 1).all()
    assert (table["best"] == "*").sum() == 1
    for key in FIGURES:
        assert figure(at, key)["data"], key
    counting = f"5-gram (counting): {five_gram():.2f}"
    assert table["5-gram"].tolist() == pytest.approx([five_gram()] * 3)
    assert f"{counting} on the same held-out text." in plain(at.caption)
    for key in ("tune_history", "tune_intermediate"):  # the held-out charts: a line at the 5-gram's figure
        layout = figure(at, key)["layout"]
        assert [a["text"] for a in layout["annotations"] if "5-gram" in a["text"]] == [counting], key
        assert [sh["y0"] for sh in layout["shapes"]] == [pytest.approx(five_gram())], key
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


def wait_for_the_study(at, seconds: float = 240):
    end = time.monotonic() + seconds
    while time.monotonic() < end and at.button(key="tune_start").disabled:
        time.sleep(1)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
    assert not at.button(key="tune_start").disabled, "the study did not end in time"


def test_generate_from_the_best_trial_opens_generate_on_its_best_checkpoint(time_machine_path):
    """One trial of AdamW at lr 0.05 for 6 epochs: its held-out perplexity is best before its last
    epoch. The trial is evaluated every epoch (the page's cadence for 6 epochs, not the Train page's 10),
    and "Generate from it" lands on Generate with its run and its best checkpoint chosen."""
    fixed = {"hp_optimizer": "adam", "hp_lr": 0.05, "hp_eval_every": 10}
    form = {"tune_vary_lr": False, "tune_vary_clip": False, "tune_spec_num_hiddens": "16"}
    at = start(tune_page(tune_trials=1, tune_epochs=6, tune_pruner="none", tune_name="gen", **fixed, **form))
    wait_for_the_study(at)
    (run,) = RunStore().runs()
    figures = [e["val_perplexity"] for e in RunStore().history(run["id"])]
    assert len(figures) == 6 and None not in figures and run["config"]["optimizer"] == "adam"
    best = RunStore().best_checkpoint(run["id"])
    assert best["epoch"] < 6, f"held-out perplexity fell every epoch ({figures}); pick a setting that overfits"
    assert f"Generate uses its checkpoint of epoch {best['epoch']}, its best held-out" in " ".join(plain(at.caption))
    at.button(key="tune_generate").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Generate"
    chosen = {k: at.session_state[k] for k in ("gen_model", "gen_run", "gen_epoch")}
    assert chosen == {"gen_model": "saved run", "gen_run": run["id"], "gen_epoch": best["epoch"]}


def test_the_page_says_before_start_when_the_pruner_cannot_act(time_machine_path):
    """Trials are evaluated every epoch up to 9 epochs (at least 5 figures a trial); with 2 epochs the
    median pruner still has no figure before the last to judge, and the page says so before Start."""
    at = tune_page(tune_epochs=2)
    warned = [w for w in plain(at.warning) if "pruner" in w]
    assert len(warned) == 1 and "the median pruner cannot end a trial early: 2 epochs evaluated every 1" in warned[0]
    assert "Held-out evaluation every 1 epochs." in " ".join(plain(at.caption))
    for settings in ({"tune_epochs": 5}, {"tune_epochs": 2, "tune_pruner": "none"}):
        assert not [w for w in plain(tune_page(**settings).warning) if "pruner" in w], settings
    assert "Held-out evaluation every 6 epochs." in " ".join(plain(tune_page(tune_epochs=30).caption))


def test_a_storage_that_is_not_a_file_is_named_on_the_page(tmp_path, monkeypatch, time_machine_path):
    monkeypatch.setenv("CHARRNN_TUNE_STORAGE", f"sqlite:///{tmp_path}")  # a folder
    shown = " ".join(errors(tune_page()))
    assert f"Storage: {tmp_path} is not a regular file; give a file path for the study database" in shown, shown


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
