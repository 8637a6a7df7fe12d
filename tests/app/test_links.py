"""Links that reproduce a view (AppTest): settings from the address, bad values left out with a warning."""

import optuna
import pytest
from streamlit.testing.v1 import AppTest
from support import APP

from charrnn.data import load_corpus
from charrnn.runs.recorder import train_recorded
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig
from charrnn.tune.storage import open_storage, study_names

pytestmark = pytest.mark.usefixtures("fresh_caches")


def open_page(page: str, **params) -> AppTest:
    """A fresh session whose first visit to `page` carries these query parameters."""
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.query_params.update(params)
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def warnings(at) -> list[str]:
    return [w.value.replace("\\", "") for w in at.warning]


def test_train_settings_come_from_the_address_and_go_back_to_it(time_machine_path):
    at = open_page("train", num_hiddens="64", lr="0.5", state="reset", model="concise", val_tokens="500")
    assert not at.warning, warnings(at)
    assert at.number_input(key="train_hp_num_hiddens").value == 64
    assert at.number_input(key="train_hp_lr").value == 0.5
    assert at.selectbox(key="train_hp_state").value == "reset"
    assert at.selectbox(key="train_hp_model").value == "concise"
    assert at.session_state["hp_val_tokens"] == 500
    # Only what differs from the recipe is in the address.
    assert {k: v[0] if isinstance(v, list) else v for k, v in at.query_params.items()} == {
        "num_hiddens": "64",
        "lr": "0.5",
        "state": "reset",
        "model": "concise",
        "val_tokens": "500",
    }


def test_the_model_fields_come_from_the_address_and_go_back_to_it(time_machine_path):
    at = open_page("train", cell="gru", num_layers="3", dropout="0.25", model="concise")
    assert not at.warning, warnings(at)
    assert at.selectbox(key="train_hp_cell").value == "gru"
    assert at.number_input(key="train_hp_num_layers").value == 3
    assert at.number_input(key="train_hp_dropout").value == 0.25
    assert dict(at.query_params) == {"cell": "gru", "num_layers": "3", "dropout": "0.25", "model": "concise"}
    at.selectbox(key="train_hp_cell").set_value("lstm")
    at.number_input(key="train_hp_dropout").set_value(0.0).run()  # back to the recipe's: out of the address
    assert dict(at.query_params) == {"cell": "lstm", "num_layers": "3", "model": "concise"}


def test_no_link_holds_none(time_machine_path):
    """Settings that are None (no run picked, no run watched) are left out of every page's address."""
    at = open_page("train", cell="lstm")
    at.session_state["hp_dropout"] = None  # as a cleared field would leave it
    for page in ("train", "generate", "runs", "data"):
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception and "None" not in str(dict(at.query_params)), (page, dict(at.query_params))


BAD = [
    ("unknown name", "train", {"colour": "blue"}, "colour"),
    ("out of range", "train", {"batch_size": "0"}, "batch_size"),
    ("not a number", "train", {"lr": "fast"}, "lr"),
    ("not a cell", "train", {"cell": "transformer"}, "cell"),
    ("too many layers", "train", {"num_layers": "9"}, "num_layers"),
    ("dropout of 1", "train", {"dropout": "1"}, "dropout"),
    ("not a choice", "data", {"mode": "shouty"}, "mode"),
    ("an upload is never in a link", "data", {"source": "upload"}, "source"),
    ("run id not in the store", "generate", {"run": "abcdef1234"}, "run"),
    ("run id that is a path", "generate", {"run": "../../etc/passwd"}, "run"),
    ("text too long", "generate", {"prefix": "x" * 10_001}, "prefix"),
    ("length over the cap", "generate", {"length": "10001"}, "length"),
    ("runs not in the store", "runs", {"runs": "abc,def"}, "runs"),
    ("study not in the storage", "tune", {"study": "no such study"}, "study"),
    ("not a study name", "tune", {"study": "../etc"}, "study"),
]


@pytest.mark.parametrize("case, page, params, name", BAD, ids=[b[0] for b in BAD])
def test_a_bad_query_value_is_left_out_with_a_warning_naming_it(
    time_machine_path, tmp_path, monkeypatch, case, page, params, name
):
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))  # no run, no study: nothing else fills the address
    monkeypatch.delenv("CHARRNN_TUNE_STORAGE", raising=False)
    at = open_page(page, **params)
    assert not at.exception
    assert any(name in w and "left out" in w for w in warnings(at)), warnings(at)
    assert at.title and at.title[0].value.lower() == page  # the page rendered
    assert name not in at.query_params  # and the address dropped it


def test_generate_link_opens_a_stored_run_with_its_settings(time_machine_path, tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    corpus = load_corpus("time_machine", max_tokens=2000, download=False)
    config = TrainConfig(num_epochs=2, num_hiddens=16, batch_size=4, num_steps=8, max_tokens=2000, device="cpu")
    run_id, _ = train_recorded(RunStore(), corpus, config)
    at = open_page("generate", run=run_id, prefix="the ", length="7", decoding="sampling", temperature="0.5")
    assert not at.warning, warnings(at)
    assert at.radio(key="generate_gen_model").value == "saved run"
    assert at.selectbox(key="generate_gen_run").value == run_id
    assert at.text_input(key="generate_gen_prefix").value == "the "
    assert at.number_input(key="generate_gen_num").value == 7
    assert at.slider(key="generate_gen_temperature").value == 0.5


def test_tune_link_opens_its_study(time_machine_path, tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CHARRNN_TUNE_STORAGE", raising=False)
    storage = open_storage()
    for name in ("first study", "second study"):
        optuna.create_study(study_name=name, storage=storage)
    names = study_names(storage)
    at = open_page("tune", study=names[-1])  # not the one the picker shows by default
    assert not at.warning, warnings(at)
    assert at.selectbox(key="tune_tune_study").value == names[-1]
    assert dict(at.query_params) in ({"study": names[-1]}, {"study": [names[-1]]})
    at.selectbox(key="tune_tune_study").set_value(names[0]).run()  # and the address follows the picker
    assert not at.exception and at.query_params["study"] in (names[0], [names[0]])
