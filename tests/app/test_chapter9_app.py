"""Chapter 9 in the app (AppTest): the Train form trains GRU, LSTM, deep and dropout models; Runs lists and
overlays them; Generate uses them from a run or a checkpoint file; demo mode caps their size; old runs
(configs without a cell) show and resume as the rnn they are.

Runs "from elsewhere" are made by the real core (`record_run`, a few tiny epochs), as the CLI makes them."""

import io
import json
import re
import sqlite3

import pytest
import streamlit.testing.v1.app_test as app_test
from stored import put_checkpoint, stored_checkpoint
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest
from support import app, figure, generate, record_run, wait_until_ended

from charrnn.runs import demo
from charrnn.runs.checkpoint import load_checkpoint
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig

TINY = dict(num_epochs=2, num_hiddens=16, max_tokens=2000, batch_size=4, num_steps=8, val_tokens=200, device="cpu")
GRU = dict(cell="gru")
LSTM = dict(cell="lstm", num_layers=2, dropout=0.2, model="concise")


@pytest.fixture
def downloads(monkeypatch):
    """What the app's download buttons serve: AppTest keeps their bytes in a media store made per run;
    this keeps each one, so a test can read back the bytes a visitor would download."""
    stores = []

    class Kept(MemoryMediaFileStorage):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            stores.append(self)

    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", Kept)

    def data(at: AppTest, key: str) -> bytes:
        url = at.download_button(key=key).proto.url
        return stores[-1].get_file(url.rsplit("/", 1)[-1]).content

    return data


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def shown(elements) -> list[str]:
    """Text as the user reads it (ui.literal escapes Markdown with backslashes)."""
    return [re.sub(r"\\(.)", r"\1", e.value) for e in elements]


def train_form(at: AppTest, **settings) -> AppTest:
    """The Train page with the form's fields set through their widgets (`settings` over TINY)."""
    at.switch_page("pages/train.py").run()
    for name, value in {**TINY, **settings}.items():
        widget = at.selectbox if isinstance(value, str) else at.number_input
        widget(key=f"train_hp_{name}").set_value(value)
    return ok(at.run())


# ---- Train -----------------------------------------------------------------------------------


def test_the_train_form_trains_a_two_layer_lstm_with_dropout_and_its_download_generates(home, downloads):
    at = train_form(app(), cell="lstm", num_layers=2, dropout=0.2)
    ok(wait_until_ended(at.button(key="train_start").click().run()))
    named = "The model: a 2-layer scratch lstm, num_hiddens 16, dropout 0.2 in training."
    assert any(named in c for c in shown(at.caption))
    (run,) = home.runs()
    assert run["status"] == "finished"
    assert [run["config"][k] for k in ("cell", "num_layers", "dropout")] == ["lstm", 2, 0.2]
    saved = stored_checkpoint(RunStore(), run["id"])["model_config"]
    assert (saved["cell"], saved["num_layers"], saved["dropout"]) == ("lstm", 2, 0.2)

    data = downloads(at, "train_download")  # the Train page's download, uploaded again on Generate
    downloaded = load_checkpoint(io.BytesIO(data))[0].config
    assert (downloaded.cell, downloaded.num_layers, downloaded.dropout) == ("lstm", 2, 0.2)
    at.switch_page("pages/generate.py").run()
    at.radio(key="generate_gen_model").set_value("checkpoint file").run()
    at.file_uploader(key="gen_upload").set_value(("lstm.pt", data, "application/octet-stream")).run()
    text = generate(ok(at), "time traveller", 12)
    assert text.startswith("time traveller") and len(text) == len("time traveller") + 12
    assert any("The model: a 2-layer scratch lstm, num_hiddens 16, dropout 0.2" in c for c in shown(at.caption))


def test_a_concise_gru_is_said_to_differ_from_the_books(home):
    at = train_form(app(), cell="gru", model="scratch")
    assert not any("nn.GRU" in c.value for c in at.caption)
    at.selectbox(key="train_hp_model").set_value("concise").run()
    (note,) = [c.value for c in at.caption if "nn.GRU" in c.value]
    assert "reset gate after the recurrent product" in note and "a different function" in note.lower()
    at.selectbox(key="train_hp_cell").set_value("lstm").run()
    assert not any("nn.GRU" in c.value for c in at.caption)


# ---- Runs ------------------------------------------------------------------------------------


def test_runs_shows_cell_and_layers_and_overlays_a_gru_and_an_lstm(home, corpus):
    gru = record_run(corpus, "the gru", TINY, **GRU)
    lstm = record_run(corpus, "the lstm", TINY, **LSTM)
    at = ok(app().switch_page("pages/runs.py").run())
    table = next(df.value for df in at.dataframe if "best perplexity" in df.value.columns)
    columns = list(table.columns)
    assert columns.index("cell") == columns.index("model") + 1 and columns.index("layers") == columns.index("cell") + 1
    rows = table.set_index("id")
    assert rows.loc[gru, ["model", "cell", "layers", "dropout"]].tolist() == ["scratch", "gru", 1, 0.0]
    assert rows.loc[lstm, ["model", "cell", "layers", "dropout"]].tolist() == ["concise", "lstm", 2, 0.2]

    at.multiselect(key="runs_runs_selected").set_value([gru, lstm]).run()
    traces = figure(ok(at), "runs_ppl")["data"]
    assert [t["name"] for t in traces] == ["the gru", "the lstm"]
    assert all(len(t["y"]) == TINY["num_epochs"] for t in traces)
    configs = next(df.value for df in at.dataframe if "differs" in df.value.columns)
    assert configs.loc["cell"].tolist() == [True, "gru", "lstm"]
    at.selectbox(key="runs_one").set_value(lstm).run()
    assert "a 2-layer concise lstm, num_hiddens 16, dropout 0.2 in training" in [t.value for t in at.text]


def old_format(home: RunStore, run_id: str):
    """Make a run look as one recorded before chapter 9: its stored config and its checkpoints' model
    configs without model, cell, num_layers and dropout."""
    new = ("model", "cell", "num_layers", "dropout")
    with sqlite3.connect(home.home / "runs.sqlite") as db:
        (config,) = db.execute("SELECT config FROM runs WHERE id=?", (run_id,)).fetchone()
        old = {k: v for k, v in json.loads(config).items() if k not in new}
        db.execute("UPDATE runs SET config=? WHERE id=?", (json.dumps(old), run_id))
    for row in home.checkpoints(run_id):
        ckpt = stored_checkpoint(home, run_id, row["epoch"])
        ckpt["model_config"] = {k: v for k, v in ckpt["model_config"].items() if k in ("vocab_size", "num_hiddens")}
        ckpt["train_config"] = {k: v for k, v in ckpt["train_config"].items() if k not in new}
        put_checkpoint(home, run_id, row["epoch"], ckpt)


RESUMED = [
    ("lstm, 2 layers, dropout", LSTM, ("concise", "lstm", 2, 0.2)),
    ("old format", None, ("scratch", "rnn", 1, 0)),
]


@pytest.mark.parametrize(("case", "settings", "model"), RESUMED, ids=[r[0] for r in RESUMED])
def test_a_resumed_run_keeps_its_model_and_an_old_one_is_an_rnn(home, corpus, case, settings, model):
    run_id = record_run(corpus, "stopped", {**TINY, "num_epochs": 3}, stop_after=1, **(settings or {}))
    if settings is None:
        old_format(home, run_id)
        assert "cell" not in home.run(run_id)["config"]
    at = ok(app().switch_page("pages/runs.py").run())
    table = next(df.value for df in at.dataframe if "best perplexity" in df.value.columns)
    assert table[["model", "cell", "layers"]].values.tolist() == [list(model[:3])]
    at.selectbox(key="runs_one").set_value(run_id).run()
    ok(at.button(key="runs_resume").click().run())
    at.switch_page("pages/train.py")
    ok(wait_until_ended(at))
    run = home.run(run_id)
    assert (run["status"], [h["epoch"] for h in home.history(run_id)]) == ("finished", [1, 2, 3])
    saved = stored_checkpoint(home, run_id)["model_config"]
    assert (saved["kind"], saved["cell"], saved["num_layers"], saved["dropout"]) == model


# ---- Generate --------------------------------------------------------------------------------


def test_generate_from_a_gru_run_and_from_a_downloaded_lstm_checkpoint(home, corpus, downloads):
    gru = record_run(corpus, "the gru", TINY, **GRU)
    lstm = record_run(corpus, "the lstm", TINY, **LSTM)
    at = ok(app().switch_page("pages/runs.py").run())
    at.selectbox(key="runs_one").set_value(gru).run()
    ok(at.button(key="runs_generate").click().run())
    at.switch_page("pages/generate.py").run()
    assert at.selectbox(key="generate_gen_run").value == gru
    assert len(generate(at, "the ", 10)) == 14
    assert any("The model: a scratch gru, num_hiddens 16" in c for c in shown(at.caption))

    at.switch_page("pages/runs.py").run()  # the LSTM's download, uploaded on the Runs page
    at.selectbox(key="runs_one").set_value(lstm).run()
    data = downloads(ok(at), "runs_download")
    at.file_uploader(key="runs_upload").set_value(("lstm.pt", data, "application/octet-stream")).run()
    assert "lstm.pt: a 2-layer concise lstm, num_hiddens 16, dropout 0.2 in training, a vocab of 28 tokens" in [
        t.value for t in ok(at).text
    ]
    ok(at.button(key="runs_gen_upload").click().run())
    at.switch_page("pages/generate.py").run()
    assert at.radio(key="generate_gen_model").value == "checkpoint file"
    assert len(generate(at, "the ", 10)) == 14
    assert any("The model: a 2-layer concise lstm" in c for c in shown(at.caption))


# ---- demo caps -------------------------------------------------------------------------------

# (case, settings, the message's beginning, or None within the caps)
MODEL_CAPS = [
    ("the book's rnn", dict(num_hiddens=512), None),
    ("one lstm layer of 512", dict(num_hiddens=512, cell="lstm", model="concise"), None),
    ("the book's deep lstm", dict(num_hiddens=256, cell="lstm", num_layers=2, model="concise"), None),
    ("an old run's config", {"num_hiddens": 512, "num_epochs": 500}, None),
    ("a 2-layer lstm of 512", dict(num_hiddens=512, cell="lstm", num_layers=2), "3,149,824 (a 2-layer scratch lstm"),
    ("4 gru layers of 256", dict(num_hiddens=256, cell="gru", num_layers=4), "1,379,328 (a 4-layer scratch gru"),
]


@pytest.mark.parametrize(("case", "settings", "start"), MODEL_CAPS, ids=[c[0] for c in MODEL_CAPS])
def test_the_model_size_cap_counts_cells_and_layers(case, settings, start):
    problems = demo.check_caps(settings if "num_epochs" in settings else TrainConfig(**settings))
    if start is None:
        assert problems == []
    else:
        (problem,) = problems
        assert problem.startswith("Model size (cell, num_layers, num_hiddens): at most 1,100,000 weights")
        assert f"in this demo, not {start}" in problem and "fewer layers" in problem


def test_demo_mode_refuses_a_deep_lstm_over_the_cap_at_start(home, monkeypatch, time_machine_path):
    monkeypatch.setenv("CHARRNN_DEMO", "1")
    at = train_form(app(), num_hiddens=512, cell="lstm", num_layers=4)
    at.button(key="train_start").click().run()
    assert not at.exception
    assert shown(at.error) == [
        "Model size (cell, num_layers, num_hiddens): at most 1,100,000 weights in the recurrent layers in this "
        "demo, not 7,348,224 (a 4-layer scratch lstm with num_hiddens 512); use fewer layers, a smaller "
        "num_hiddens or a cheaper cell (a gru layer costs about 3 rnn layers, an lstm 4)."
    ]
    assert at.button(key="train_stop").disabled and home.runs() == []  # nothing trains or waits in line
