"""The dashboard through Streamlit's AppTest: every page renders, and Data, Train and Generate work."""

import time

import pytest
from streamlit.testing.v1 import AppTest
from support import APP, app, figure, generate, start, wait_until_ended

from charrnn.data import load_corpus
from charrnn.generate import predict
from charrnn.runs.recorder import train_recorded
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig

pytestmark = pytest.mark.usefixtures("fresh_caches")

PAGES = ["pages/data.py", "pages/train.py", "pages/generate.py"]
# A run that takes a second or two on 2 CPU cores.
TINY = {"hp_num_epochs": 3, "hp_num_hiddens": 16, "hp_max_tokens": 2000, "hp_batch_size": 4, "hp_num_steps": 8}


def table(at: AppTest, column: str):
    """The first dataframe or table with this column (they carry no key in AppTest)."""
    for df in [*at.dataframe, *at.table]:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no table with a column {column}")


def test_every_page_renders(time_machine_path):
    at = app()
    assert [t.value for t in at.title] == ["charrnn studio"]
    assert any("CPU" in t.value or "GPU" in t.value or "cuda" in t.value for t in at.sidebar.text)
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert not at.error, (page, [e.value for e in at.error])
    at.switch_page("streamlit_app.py").run()
    assert not at.exception


def test_data_page_shows_the_recipe(time_machine_path):
    at = app()
    at.switch_page("pages/data.py").run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Vocab size"] == "28"
    assert metrics["Tokens used for training"] == "10,000"
    shapes = list(table(at, "shape")["shape"])
    assert shapes == ["(32, 35)", "(35, 32, 28)", "(1120, 28)", "(32, 512)"]
    rows = at.code[0].value.splitlines()
    x, y = rows[0].split("X  ")[1], rows[1].split("Y  ")[1]
    assert x[1:] == y[:-1]  # Y is X shifted by one


def test_settings_survive_a_page_switch(time_machine_path):
    at = app()
    at.switch_page("pages/data.py").run()
    at.number_input(key="data_hp_batch_size").set_value(8).run()
    at.switch_page("pages/train.py").run()
    assert at.number_input(key="train_hp_batch_size").value == 8
    at.switch_page("streamlit_app.py").run()
    at.switch_page("pages/data.py").run()
    assert at.number_input(key="data_hp_batch_size").value == 8
    assert list(table(at, "shape")["shape"])[0] == "(8, 35)"


def test_train_shows_history_in_the_chart_then_generate(time_machine_path):
    at = wait_until_ended(start(app(), **TINY))
    history = table(at, "grad norm")
    assert list(history["epoch"]) == [1, 2, 3]
    spec = figure(at, "ppl")
    assert spec["data"][0]["y"] == pytest.approx(list(history["perplexity"]))
    assert at.code[0].value.startswith("perplexity ") and "tokens/sec on cpu" in at.code[0].value

    at.switch_page("pages/generate.py").run()
    text = generate(at, "time traveller", 20)
    assert text.startswith("time traveller") and len(text) == len("time traveller") + 20
    spec = figure(at, "gen_probs")
    assert 0 < sum(spec["data"][0]["y"]) <= 1.0 + 1e-6

    at.switch_page("pages/train.py").run()  # the submitted form kept its values
    assert at.number_input(key="train_hp_num_hiddens").value == TINY["hp_num_hiddens"]


def test_stop_ends_a_run_early(time_machine_path):
    at = start(app(), **{**TINY, "hp_num_epochs": 100_000})
    deadline = time.monotonic() + 60
    while not any(p.proto.text.startswith("epoch") for p in at.get("progress")):  # its process has started
        assert time.monotonic() < deadline, "no epoch finished within 60 s"
        time.sleep(0.3)
        at.run()
    at.button(key="train_stop").click().run()
    at = wait_until_ended(at, timeout=10)
    assert len(table(at, "grad norm")) < 100_000
    assert [p.proto.text.split()[0] for p in at.get("progress")] == ["stopped"]
    assert at.button(key="train_stop").disabled


def test_generate_without_a_model_offers_quick_training(time_machine_path, tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "empty-home"))  # no finished run to fall back on
    at = app()
    at.switch_page("pages/generate.py").run()
    assert not at.exception
    assert at.button(key="gen_quick").label.startswith("Quick training")


def test_a_fresh_session_generates_from_the_newest_finished_run(time_machine_path, tmp_path, monkeypatch):
    """A reload or a shared link: no model in this session, but a finished run in the store."""
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    store = RunStore()
    corpus = load_corpus("time_machine", max_tokens=2000, download=False)
    config = TrainConfig(num_epochs=2, num_hiddens=16, batch_size=4, num_steps=8, max_tokens=2000, device="cpu")
    run_id, result = train_recorded(store, corpus, config, name="the newest one")
    at = app()
    at.switch_page("pages/generate.py").run()
    assert not at.exception and not at.error
    named = [c.value.replace("\\", "") for c in at.caption]  # the page names the model it uses
    assert any(f"run the newest one (id {run_id}), checkpoint of epoch 2 (the last" in c for c in named), named
    assert generate(at, "time traveller", 20) == predict(result.model, corpus.vocab, "time traveller", 20)


def test_user_errors_name_the_field(time_machine_path):
    at = app()
    at.switch_page("pages/train.py").run()
    at.number_input(key="train_hp_max_tokens").set_value(100)  # too short for one 32 x 35 minibatch
    at.button(key="train_start").click().run()
    assert not at.exception
    assert any("batch\\_size" in e.value and "max\\_tokens" in e.value for e in at.error), [e.value for e in at.error]


def test_offline_still_starts_and_offers_the_fallback(tmp_path, monkeypatch):
    """No local copy and no network: Home says so, Data offers the fallback text, which works."""
    import urllib.error

    import charrnn.data

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("CHARRNN_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(charrnn.data.urllib.request, "urlopen", no_network)
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    assert at.button(key="home_download")
    at.switch_page("pages/data.py").run()
    assert not at.exception
    assert any("Could not download" in e.value for e in at.error)
    # The address to fetch it by hand stays a clean link (an escaped one would show its backslashes).
    assert any("http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt" in e.value for e in at.error)
    at.switch_page("streamlit_app.py").run()
    assert any("Offline" in w.value for w in at.warning)
    at.switch_page("pages/data.py").run()
    at.selectbox(key="data_corpus_source").set_value("fallback").run()
    assert not at.exception and not at.error
    assert {m.label for m in at.metric} >= {"Vocab size"}
