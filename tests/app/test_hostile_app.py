"""Hostile names, tokens and texts through every page (AppTest): shown literally, never rendered.

Anything a user or a file controls (an upload's name, a run's name, a checkpoint's vocab) may hold
Markdown, HTML or KaTeX. Streamlit renders Markdown in st.error, st.caption, st.info and widget labels,
and Plotly renders tags in labels, so each such text must arrive escaped. The checks read what the
page sends: the Markdown source of every element, and the Plotly figures' labels.
"""

import io
import json

import pytest
import streamlit as st
import torch
from support import app, figure, wait_until_ended
from test_ui_errors import PNG, Upload, checkpoint_bytes, no_exception, upload_text

from charrnn.data import load_corpus
from charrnn.models import ModelConfig, ScratchModel
from charrnn.runs.checkpoint import make_checkpoint
from charrnn.runs.recorder import train_recorded
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig

pytestmark = pytest.mark.usefixtures("fresh_caches")

# Markdown (bold, a link, an image that a browser would fetch), HTML and KaTeX in one name.
HOSTILE = "**bold** [link](http://evil.example/a) ![img](http://evil.example/i.png) <b>tag</b> $x^2$"
LIVE_MARKUP = ("**bold**", "[link](", "![img](", "<b>", "$x^2$")  # any of these unescaped would render


def markdown_sources(at) -> list[str]:
    """The Markdown source of every element that renders Markdown."""
    elements = [*at.markdown, *at.caption, *at.error, *at.warning, *at.info, *at.success]
    return [e.value for e in elements]


def assert_nothing_renders(at):
    for source in markdown_sources(at):
        assert not any(m in source for m in LIVE_MARKUP), source
        assert "](http" not in source, source


def test_a_refused_upload_named_with_markdown_is_shown_literally(time_machine_path):
    at = upload_text(app(), HOSTILE + ".txt", PNG)
    at.switch_page("pages/data.py").run()
    no_exception(at)
    [message] = [e.value for e in at.error]
    assert "binary" in message
    assert "\\*\\*bold\\*\\*" in message and "\\!\\[img\\]" in message and "\\<b\\>" in message
    assert "`http://evil.example/i.png`" in message  # an address in a name is a code span: never fetched
    assert_nothing_renders(at)


def hostile_checkpoint() -> bytes:
    """A valid checkpoint whose vocab holds a link and markup as tokens."""
    corpus = load_corpus(b"abc abc cab " * 50, mode="raw")
    tokens = [*corpus.vocab.idx_to_token, '<a href="http://evil.example">click</a>', "<b>B</b>"]
    model = ScratchModel(ModelConfig(len(tokens), 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # make the link token the likeliest next character everywhere
        model.b_q[len(tokens) - 2] = 5.0
    ckpt = make_checkpoint(model, corpus.vocab)
    ckpt["vocab"] = tokens
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    return buffer.getvalue()


def test_vocab_tokens_from_a_checkpoint_reach_plotly_escaped(time_machine_path, monkeypatch):
    monkeypatch.setattr(st, "file_uploader", lambda *args, **kwargs: Upload(hostile_checkpoint(), HOSTILE + ".pt"))
    at = app()
    at.session_state["gen_model"] = "checkpoint file"
    at.switch_page("pages/generate.py").run()
    no_exception(at)
    at.text_input(key="generate_gen_prefix").set_value("abc").run()
    at.number_input(key="generate_gen_num").set_value(3).run()
    at.button(key="gen_go").click().run()
    no_exception(at)
    assert '<a href="http://evil.example">click</a>' in at.code[0].value  # the plain text shows it as written
    labels = figure(at, "gen_probs")["data"][0]["x"]
    assert '&lt;a href="http://evil.example"&gt;click&lt;/a&gt;' in labels, labels
    assert not any("<a" in str(label) or "<b>" in str(label) for label in labels), labels
    assert_nothing_renders(at)
    for html in at.get("html"):  # the continuation is drawn as escaped HTML
        assert "<a href" not in html.proto.body, html.proto.body


def test_a_run_named_with_markdown_is_shown_literally_on_every_page(time_machine_path, tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    corpus = load_corpus("time_machine", max_tokens=2000, download=False)
    config = TrainConfig(num_epochs=2, num_hiddens=16, batch_size=4, num_steps=8, max_tokens=2000, device="cpu")
    run_id, _ = train_recorded(RunStore(), corpus, config, name=HOSTILE)
    at = app()
    for page in ("pages/runs.py", "pages/generate.py", "pages/train.py", "pages/data.py"):
        at.switch_page(page).run()
        no_exception(at)
        assert_nothing_renders(at)
    at.switch_page("pages/runs.py").run()
    at.multiselect(key="runs_runs_selected").set_value([run_id]).run()
    at.button(key="runs_del").click().run()  # the confirmation quotes the name
    no_exception(at)
    assert any("Delete" in w.value for w in at.warning)
    assert_nothing_renders(at)
    names = [trace["name"] for trace in figure(at, "runs_ppl")["data"]]
    assert names and not any("<b>" in n for n in names), names


def test_data_page_with_the_whole_text_and_a_large_batch_draws_both_samplings(time_machine_path):
    """max_tokens 0 and batch_size 1024 are within the widgets' ranges: no exception, one picture."""
    at = app()
    at.switch_page("pages/data.py").run()
    at.number_input(key="data_hp_max_tokens").set_value(0).run()
    at.number_input(key="data_hp_batch_size").set_value(1024).run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    layout = figure(at, "layout")
    assert len(layout["data"]) == 2
    assert any("wrapped into 1024 rows" in c.value for c in at.caption), [c.value for c in at.caption]


def test_a_damaged_store_is_named_on_train_and_runs_and_start_is_refused(time_machine_path, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "runs.sqlite").write_bytes(b"this is not a database, it is a note " * 100)
    before = (home / "runs.sqlite").read_bytes()
    monkeypatch.setenv("CHARRNN_HOME", str(home))
    at = app()
    at.switch_page("pages/train.py").run()
    no_exception(at)
    assert any("runs.sqlite" in e.value.replace("\\", "") for e in at.error), [e.value for e in at.error]
    for key, value in {"hp_num_hiddens": 16, "hp_max_tokens": 2000, "hp_batch_size": 4, "hp_num_steps": 8}.items():
        at.number_input(key=f"train_{key}").set_value(value)
    at.button(key="train_start").click().run()
    no_exception(at)
    assert at.session_state["train_error"] and "runs.sqlite" in at.session_state["train_error"]
    assert not at.button(key="train_start").disabled  # nothing started, so nothing says "running" for ever
    assert not any("running" in t.value for t in at.sidebar.text), [t.value for t in at.sidebar.text]
    at.switch_page("pages/runs.py").run()
    no_exception(at)
    assert any("runs.sqlite" in e.value.replace("\\", "") for e in at.error)
    for page in ("generate", "book", "inside", "tune", "data"):  # every page opens, and says so where it needs runs
        at.switch_page(f"pages/{page}.py").run()
        no_exception(at)
    assert (home / "runs.sqlite").read_bytes() == before  # nothing in the store changed


def test_train_again_keeps_every_value_the_cli_accepts(time_machine_path, tmp_path, monkeypatch):
    """A run made with batch_size 2,000 and lr 1e-9 comes back in the form exactly, and Start records them."""
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    text = load_corpus("time_machine", max_tokens=0, download=False)
    settings = dict(num_epochs=1, num_hiddens=8, batch_size=2000, num_steps=8, max_tokens=0, lr=1e-9, device="cpu")
    run_id, _ = train_recorded(RunStore(), text, TrainConfig(**settings))
    at = app()
    at.switch_page("pages/runs.py").run()
    at.selectbox(key="runs_one").set_value(run_id).run()
    at.button(key="runs_again").click().run()
    at.switch_page("pages/train.py").run()
    no_exception(at)
    assert at.number_input(key="train_hp_batch_size").value == 2000
    assert at.number_input(key="train_hp_lr").value == 1e-9
    at = wait_until_ended(at.button(key="train_start").click().run())
    no_exception(at)
    assert not at.session_state.get("train_error"), at.session_state["train_error"]
    newest = RunStore().runs()[0]
    assert newest["id"] != run_id
    assert newest["config"]["batch_size"] == 2000 and newest["config"]["lr"] == 1e-9
    json.dumps(newest["config"])  # plain values, as stored


def test_a_prefix_over_the_cap_is_cut_at_the_limit_with_a_message(time_machine_path, monkeypatch):
    """200,000 characters once cost 16 s of server time and 1.2 GB; the field now stops at 10,000 and says so
    (the core refuses longer ones with a line: tests/test_generate.py)."""
    monkeypatch.setattr(st, "file_uploader", lambda *args, **kwargs: Upload(checkpoint_bytes(), "model.pt"))
    at = app()
    at.session_state["gen_model"] = "checkpoint file"
    at.switch_page("pages/generate.py").run()
    at.text_input(key="generate_gen_prefix").set_value("a" * 200_000).run()
    assert len(at.session_state["gen_prefix"]) == 10_000
    assert any("limit of 10,000 characters" in c.value for c in at.caption), [c.value for c in at.caption]
    at.number_input(key="generate_gen_num").set_value(5).run()
    at.button(key="gen_go").click().run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert at.code[0].value.startswith("a" * 10_000) and len(at.code[0].value) == 10_005
