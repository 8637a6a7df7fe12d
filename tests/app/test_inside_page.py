"""The Inside page through AppTest: a saved run, the store's newest run, an uploaded checkpoint; what
its charts hold is checked against charrnn.inside run on the same model (not just that they render).

Runs are made by the real core (`train_recorded`, a few tiny epochs) in a store of their own; uploads
go through a stand-in for `st.file_uploader` (AppTest cannot drive it), as in test_ui_errors.py."""

import io

import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest
from support import APP, figure

from charrnn import inside as core
from charrnn.data import load_corpus
from charrnn.generate import GenerateResult
from charrnn.models import ModelConfig, make_model
from charrnn.runs.checkpoint import make_checkpoint
from charrnn.runs.recorder import load_stored, train_recorded
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig, build_model

# clip 0.05: small enough that the tiny run clips, so the history chart has epochs to mark.
TINY = dict(num_epochs=3, num_hiddens=16, max_tokens=2000, batch_size=8, num_steps=8, device="cpu", clip=0.05)


@pytest.fixture(autouse=True)
def own_store(tmp_path, monkeypatch, fresh_caches):
    """An empty store per test (and fresh Streamlit caches: AppTest instances share them)."""
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    return RunStore()


@pytest.fixture(scope="module")
def corpus(time_machine_path):
    return load_corpus("time_machine", mode="book", max_tokens=2000, download=False)


@pytest.fixture(scope="module")
def recipe_text(time_machine_path):
    return load_corpus("time_machine", mode="book", max_tokens=10000, download=False).text


def record(corpus, **settings) -> str:
    run_id, _ = train_recorded(RunStore(), corpus, TrainConfig(**{**TINY, **settings}), checkpoint_every=1, name="tiny")
    return run_id


def inside(**state) -> AppTest:
    """A fresh app with these settings, on the Inside page; no exception allowed."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page("pages/inside.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def captions(at: AppTest) -> str:
    """Every caption, without the backslashes ui.literal adds so that Markdown shows them as written."""
    return "\n".join(c.value.replace("\\", "") for c in at.caption)


def no_error(at: AppTest):
    assert not at.error, [e.value for e in at.error]


def grads(model, recipe_text: str, k: int = 1, steps: int = 35, loss: str = "mean") -> list[float]:
    """What the gradient chart must show for `model`: the recipe's k-th minibatch (batch 32)."""
    indices = model.vocab.encode(recipe_text[:10000])
    X, Y, state = core.minibatch_with_state(model, indices, 32, steps, k)
    return core.grad_norms_through_time(model, X, Y, state, loss=loss)


def run_model(run_id: str):
    model, vocab, _ = load_stored(RunStore(), run_id, RunStore().last_checkpoint(run_id)["epoch"])
    model.vocab = vocab  # carried along for `grads`
    return model, vocab


def test_a_saved_run_shows_its_units_its_gradients_and_its_clipping(corpus, recipe_text):
    run_id = record(corpus)
    at = inside(gen_model="saved run", gen_run=run_id)
    no_error(at)
    model, vocab = run_model(run_id)
    text = recipe_text[10000:10150]  # the default: 150 chars right after the training slice
    states = core.hidden_states(model, vocab, text)

    heat = figure(at, "ins_heatmap")["data"][0]
    units = core.top_variance(states, 12)  # the default: the 12 units that vary most
    assert heat["y"] == [f"unit {u}" for u in units]
    torch.testing.assert_close(torch.tensor(heat["z"]), states[:, units].T, rtol=1e-5, atol=1e-6)
    assert (heat["zmin"], heat["zmax"], heat["zmid"], heat["reversescale"]) == (-1, 1, 0, True)  # red +, blue -

    curves = figure(at, "ins_grads")["data"]
    assert [c["name"] for c in curves] == ["current weights", "initial weights (seed 0)"]
    assert curves[0]["y"] == pytest.approx(grads(model, recipe_text), rel=1e-4)
    initial = build_model(len(vocab), TrainConfig(**TINY))
    initial.vocab = vocab
    assert curves[1]["y"] == pytest.approx(grads(initial, recipe_text), rel=1e-4)
    assert curves[0]["y"] != pytest.approx(curves[1]["y"], rel=1e-2)  # training changed them
    assert figure(at, "ins_grads")["layout"]["yaxis"]["type"] == "log"

    spec = figure(at, "ins_grad_history")
    history = RunStore().history(run_id)
    assert spec["data"][0]["y"] == pytest.approx([h["grad_norm"] for h in history])
    assert spec["data"][1]["x"] == [h["epoch"] for h in history if h["clipped"] > 0] != []
    assert spec["data"][2]["name"] == "clip θ = 0.05" and spec["data"][2]["y"] == [0.05, 0.05]

    # One unit over the text: each character escaped, coloured by that unit's value.
    html = at.get("html")[0].proto.body
    assert html.count("<span") == len(text)
    assert f"unit {units[0]} = {float(states[0, units[0]]):+.3f}" in html


def test_later_minibatches_carry_the_state_and_num_steps_and_the_loss_change_the_picture(corpus, recipe_text):
    run_id = record(corpus)
    at = inside(gen_model="saved run", gen_run=run_id, ins_steps=60, ins_batch=3)
    no_error(at)
    model, _ = run_model(run_id)
    curves = figure(at, "ins_grads")["data"]
    assert len(curves[0]["y"]) == 60
    assert curves[0]["y"] == pytest.approx(grads(model, recipe_text, k=3, steps=60), rel=1e-4)
    at.session_state["ins_loss"] = "last step"
    at.run()
    no_error(at)
    last = figure(at, "ins_grads")["data"][0]["y"]
    assert last == pytest.approx(grads(model, recipe_text, k=3, steps=60, loss="last step"), rel=1e-4)
    assert last[0] < last[-1] / 10  # little of the last step's loss reaches 60 steps back
    at.session_state["ins_steps"] = 300  # one minibatch only: the pick is capped, not refused
    at.run()
    no_error(at)
    assert len(figure(at, "ins_grads")["data"][0]["y"]) == 300


def test_with_no_model_picked_the_newest_finished_run_is_used_and_named(corpus):
    record(corpus, seed=1)
    newest = record(corpus, seed=2)
    at = inside()  # nothing picked yet (none of the visitor's own runs)
    no_error(at)
    assert f"Looking inside run tiny (id {newest}), checkpoint of epoch 3 (the last" in captions(at)
    assert figure(at, "ins_grads")["data"][1]["name"] == "initial weights (seed 2)"


def test_with_no_model_anywhere_the_page_says_where_to_get_one(time_machine_path):
    at = inside()
    no_error(at)
    assert any("Train page" in i.value for i in at.info)


class Upload(io.BytesIO):
    """What st.file_uploader returns, enough for the pages: bytes with a name and an id."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name, self.file_id = name, f"id-{name}"


def checkpoint(corpus, train_config: TrainConfig | None) -> tuple[bytes, object]:
    model = make_model(ModelConfig(len(corpus.vocab), 16, "concise"), generator=torch.Generator().manual_seed(4))
    history = [{"epoch": 1, "grad_norm": 2.0, "clipped": 1.0}, {"epoch": 2, "grad_norm": 0.5, "clipped": 0.0}]
    buffer = io.BytesIO()
    torch.save(make_checkpoint(model, corpus.vocab, train_config, history=history if train_config else ()), buffer)
    model.vocab = corpus.vocab
    return buffer.getvalue(), model


@pytest.mark.parametrize("with_config", [True, False], ids=["with its config", "weights only"])
def test_an_uploaded_checkpoint_of_the_concise_model(corpus, recipe_text, monkeypatch, with_config):
    config = TrainConfig(num_hiddens=16, model="concise", seed=9, clip=1.0) if with_config else None
    data, model = checkpoint(corpus, config)
    monkeypatch.setattr(st, "file_uploader", lambda *args, **kwargs: Upload(data, "mine.pt"))
    at = inside(gen_model="checkpoint file")
    no_error(at)
    assert "Looking inside checkpoint file mine.pt: a concise rnn, 16 hidden units a layer." in captions(at)
    curves = figure(at, "ins_grads")["data"]
    assert curves[0]["y"] == pytest.approx(grads(model, recipe_text), rel=1e-4)
    if with_config:
        assert curves[1]["name"] == "initial weights (seed 9)"
        assert figure(at, "ins_grad_history")["data"][1]["x"] == [1]  # epoch 1 clipped
    else:
        assert len(curves) == 1
        assert "no training config" in captions(at)
        assert "ins_grad_history" not in [el.proto.id.rsplit("-", 1)[-1] for el in at.get("plotly_chart")]


def test_a_checkpoint_whose_config_and_history_are_malformed_still_shows_its_weights(corpus, monkeypatch):
    """The loader checks the weights; the config and history are the file's word: bad ones are left out."""
    data, _ = checkpoint(corpus, None)
    ckpt = torch.load(io.BytesIO(data), weights_only=True)
    ckpt["train_config"] = {"num_hiddens": 16, "model": "concise", "seed": "not a seed"}
    ckpt["history"] = [{"epoch": "one", "grad_norm": None}, 5, {"epoch": 2, "grad_norm": 0.5, "clipped": 0.0}]
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    monkeypatch.setattr(st, "file_uploader", lambda *args, **kwargs: Upload(buffer.getvalue(), "odd.pt"))
    at = inside(gen_model="checkpoint file")
    no_error(at)
    assert [c["name"] for c in figure(at, "ins_grads")["data"]] == ["current weights"]
    assert figure(at, "ins_grad_history")["data"][0]["x"] == [2]  # the one well-formed epoch


def test_typed_text_is_escaped_everywhere_it_is_shown(corpus):
    run_id = record(corpus)
    typed = "<b>bold</b> **x** [a](http://e.com) <script>alert(1)</script> & é"
    at = inside(gen_model="saved run", gen_run=run_id, ins_text="typed", ins_typed=typed)
    no_error(at)
    html = at.get("html")[0].proto.body
    assert "<b>" not in html and "<script" not in html and "&lt;" in html and "&amp;" in html
    ticks = figure(at, "ins_heatmap")["layout"]["xaxis"]["ticktext"]
    assert "&lt;" in ticks and "<" not in ticks and "·" in ticks  # a space shows as ·
    assert any("<unk>" in w.value for w in at.warning)  # *, [, é ... are not in the book's vocab
    assert "'é'" in " ".join(t.value for t in at.text)


# (settings, what the one error must say)
BAD = [
    ({"ins_pick": "by number", "ins_units": "3, x"}, "units: 'x' is not a unit number"),
    ({"ins_pick": "by number", "ins_units": "16"}, "outside 0-15"),
    ({"ins_text": "typed", "ins_typed": "a" * 2001}, "Text: text is 2,001 characters; the limit is 2,000"),
    ({"ins_text": "typed", "ins_typed": ""}, "Text: text is empty"),
]


@pytest.mark.parametrize("settings, needle", BAD, ids=["not a number", "no such unit", "too long", "empty"])
def test_bad_input_is_one_error_naming_the_field(corpus, settings, needle):
    at = inside(gen_model="saved run", gen_run=record(corpus), **settings)
    msgs = [e.value.replace("\\", "") for e in at.error]
    assert len(msgs) == 1 and needle in msgs[0], msgs
    assert figure(at, "ins_grads")  # the gradient section still stands


def test_units_matched_to_a_feature_show_their_r(corpus, recipe_text):
    run_id = record(corpus)
    at = inside(
        gen_model="saved run", gen_run=run_id, ins_pick="best match for a feature", ins_feature="vowel", ins_n=3
    )
    no_error(at)
    model, vocab = run_model(run_id)
    text = recipe_text[10000:10150]
    r = core.correlations(core.hidden_states(model, vocab, text), core.feature_values(text, "vowel"))
    units = core.top_correlated(r, 3)
    assert figure(at, "ins_heatmap")["data"][0]["y"] == [f"unit {u} (r {r[u]:+.2f})" for u in units]


def test_the_last_generation_can_be_read(corpus):
    run_id = record(corpus)
    result = GenerateResult(prefix="time traveller", generated=" was here")
    at = inside(gen_model="saved run", gen_run=run_id, ins_text="last generation", gen_result=(0, result))
    no_error(at)
    assert len(figure(at, "ins_heatmap")["data"][0]["x"]) == len("time traveller was here")


# (run settings, what Show offers in words, the gate picked, the name the caption gives the model)
GATED = [
    (dict(cell="gru"), ["hidden state H", "update gate Z", "reset gate R"], "R", "a scratch gru"),
    (
        dict(cell="lstm", model="concise", num_layers=2),
        ["hidden state H", "input gate I", "forget gate F", "output gate O", "memory cell C"],
        "F",
        "a 2-layer concise lstm",
    ),
]


@pytest.mark.parametrize("settings, offered, gate, name", GATED, ids=["gru", "deep lstm"])
def test_a_gated_run_offers_its_gates_and_shows_the_one_picked(corpus, recipe_text, settings, offered, gate, name):
    run_id = record(corpus, **settings)
    # The units matched to a feature, and a gate picked earlier that this cell lacks (it falls back to H).
    at = inside(gen_model="saved run", gen_run=run_id, ins_show="Z" if "lstm" in name else "I", ins_n=5)
    no_error(at)
    assert f"{run_id}), checkpoint of epoch 3 (the last" in captions(at)
    assert f"): {name}, 16 hidden units a layer." in captions(at)
    show = at.radio(key="inside_ins_show")
    assert show.options == offered and show.value == "H"
    assert figure(at, "ins_heatmap")["data"][0]["colorbar"]["title"]["text"] == "H"
    model, vocab = run_model(run_id)
    text = recipe_text[10000:10150]
    at.session_state["ins_pick"] = "best match for a feature"
    show.set_value(gate).run()
    no_error(at)
    gates = core.hidden_states(model, vocab, text, gate)  # (150, 16), what the top layer's gate did
    r = core.correlations(gates, core.feature_values(text, "space"))
    units = core.top_correlated(r, 5)
    heat = figure(at, "ins_heatmap")["data"][0]
    assert heat["y"] == [f"unit {u} (r {r[u]:+.2f})" for u in units]
    torch.testing.assert_close(torch.tensor(heat["z"]), gates[:, units].T, rtol=1e-5, atol=1e-6)
    assert (heat["zmin"], heat["zmax"], heat["colorbar"]["title"]["text"]) == (0, 1, gate)  # shut white, open red
    assert "the gate is open" in captions(at)
    # The interpretable-cell search across H and every gate, checked against an exhaustive one written here.
    ranking = next(df.value for df in at.dataframe if list(df.value.columns) == ["what", "unit", "r"])
    space = core.feature_values(text, "space")
    every = [
        (what, unit, r)
        for what in core.shown_for(model)
        for unit, r in enumerate(core.correlations(core.hidden_states(model, vocab, text, what), space).tolist())
    ]
    best = sorted(every, key=lambda found: -abs(found[2]))[:10]
    assert ranking["r"].tolist() == [round(r, 3) for *_, r in best]
    assert (ranking.iloc[0]["what"], ranking.iloc[0]["unit"]) == (core.SHOWN[best[0][0]], best[0][1])
    # The gradient through time of its top layer, at its weights and at the initial ones of its cell and depth.
    curves = figure(at, "ins_grads")["data"]
    assert curves[0]["y"] == pytest.approx(grads(model, recipe_text), rel=1e-4)
    initial = build_model(len(vocab), TrainConfig(**{**TINY, **settings}))
    initial.vocab = vocab
    assert curves[1]["name"] == "initial weights (seed 0)"
    assert curves[1]["y"] == pytest.approx(grads(initial, recipe_text), rel=1e-4)
