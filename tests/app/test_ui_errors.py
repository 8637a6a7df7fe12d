"""Hostile input through the app (issue 6), table-driven with AppTest.

Every case a user can cause in the browser ends in an `st.error` (or, for prefix characters outside
the vocab, an `st.warning`) that names the field or file and says what to do, never in an exception.
The core-level cases are in tests/test_hostile.py; these check that they reach the page as text.

AppTest cannot upload files. Uploaded texts are seeded into `st.session_state["upload"]`, the way
pages/data.py stores an upload; uploaded checkpoints go through a stand-in for `st.file_uploader`
that returns the file (pages call `st.file_uploader`, and AppTest runs them in this process).
"""

import importlib
import io
import pickle
import random
import time
from pathlib import Path

import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest
from support import app, figure, start, wait_until_ended

from charrnn.data import load_corpus
from charrnn.models import ModelConfig, ScratchModel
from charrnn.runs.checkpoint import FORMAT, make_checkpoint

pytestmark = pytest.mark.usefixtures("fresh_caches")

TINY = {"hp_num_hiddens": 16, "hp_max_tokens": 2000, "hp_batch_size": 4, "hp_num_steps": 8}
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00"


def plain(markdown: str) -> str:
    """An st.error's text without the backslashes ui.literal adds so Markdown shows it as written."""
    return markdown.replace("\\", "")


def errors(at: AppTest) -> list[str]:
    return [plain(e.value) for e in at.error]


def no_exception(at: AppTest):
    assert not at.exception, [e.value for e in at.exception]


def upload_text(at: AppTest, name: str, data: bytes, mode: str = "raw") -> AppTest:
    """Seed an uploaded .txt as pages/data.py stores one (AppTest cannot drive st.file_uploader)."""
    at.session_state["corpus_source"] = "upload"
    at.session_state["corpus_mode"] = mode
    at.session_state["upload"] = {"name": name, "data": data}
    return at


# ---- uploaded texts --------------------------------------------------------------------------

# (case, file name, bytes, words the Data page's error must hold: the problem and the fix)
BAD_TEXTS = [
    ("empty", "empty.txt", b"", ["empty", "give a text"]),
    ("whitespace only", "blank.txt", b" \n\t\r\n  ", ["empty", "give a text"]),
    ("PNG bytes", "picture.txt", PNG, ["binary", "UTF-8 .txt"]),
    ("invalid UTF-8", "latin1.txt", b"the time traveller \xff\xfe said", ["not valid UTF-8", "save it as UTF-8"]),
    ("no letters in book mode", "digits.txt", b"1234 5678 ...\n" * 20, ["no letters", "raw"]),
]


@pytest.mark.parametrize("case, name, data, needles", BAD_TEXTS, ids=[c[0] for c in BAD_TEXTS])
def test_bad_upload_is_refused_on_the_data_page_naming_the_file(time_machine_path, case, name, data, needles):
    at = upload_text(app(), name, data, mode="book" if case == "no letters in book mode" else "raw")
    at.switch_page("pages/data.py").run()
    no_exception(at)
    msgs = errors(at)
    assert len(msgs) == 1, msgs
    assert all(n in msgs[0] for n in needles), msgs
    # The file is named so the user knows which upload is meant.
    assert name in msgs[0], msgs


@pytest.mark.parametrize("case, name, data, needles", BAD_TEXTS[:4], ids=[c[0] for c in BAD_TEXTS[:4]])
def test_bad_upload_is_refused_at_start(time_machine_path, case, name, data, needles):
    at = start(upload_text(app(), name, data))
    msgs = errors(at)
    assert any(all(n in m for n in needles) for m in msgs), msgs
    assert at.session_state["train_error"]
    assert not at.button(key="train_start").disabled  # nothing started


def test_one_repeated_char_works(time_machine_path):
    at = upload_text(app(), "aaaa.txt", b"a" * 3000)
    at.switch_page("pages/data.py").run()
    no_exception(at)
    assert not at.error, errors(at)
    assert {m.label: m.value for m in at.metric}["Vocab size"] == "2"  # <unk> and "a"
    at = wait_until_ended(start(at, **{**TINY, "hp_num_epochs": 2}))
    no_exception(at)
    assert not at.error, errors(at)
    assert [p.proto.text.split()[0] for p in at.get("progress")] == ["finished"]


def test_text_shorter_than_one_minibatch_is_refused_at_start_with_the_largest_settings(time_machine_path):
    at = upload_text(app(), "short.txt", b"the time traveller " * 30)  # 570 chars; the recipe needs 32 x 35
    at = start(at)
    msgs = errors(at)
    assert any("batch_size at most 15" in m and "num_steps at most 17" in m for m in msgs), msgs
    assert not at.button(key="train_start").disabled
    at.switch_page("pages/data.py").run()  # the Data page says the same under Minibatches
    no_exception(at)
    assert any(m.startswith("Minibatches:") and "batch_size" in m for m in errors(at)), errors(at)


def test_corpus_text_is_shown_literally_never_as_markdown_or_html(time_machine_path):
    text = "**bold** <b>x</b> _it_ [link](http://x) # head\n" * 40
    at = upload_text(app(), "**name**<i>.txt", text.encode())
    at.switch_page("pages/data.py").run()
    no_exception(at)
    assert not at.error, errors(at)
    shown = [t.value for t in at.text]
    assert text[:300].rstrip() in shown  # st.text: the sample exactly as written
    assert "**name**<i>.txt" in shown  # the upload's name, also as text
    # Nothing user-written went into a Markdown element, where "**" would turn bold and tags render.
    markdown = [m.value for m in [*at.markdown, *at.caption]]
    assert not any("<b>x</b>" in m or "**bold**" in m for m in markdown), markdown


# ---- hyperparameters -------------------------------------------------------------------------

# The Train form's number widgets refuse non-positive values themselves (the browser clamps to min).
WIDGET_MINIMUMS = [
    ("train_hp_num_hiddens", 1),
    ("train_hp_num_steps", 1),
    ("train_hp_batch_size", 1),
    ("train_hp_num_epochs", 1),
    ("train_hp_clip", 0.0),
    ("train_hp_max_tokens", 0),
    ("train_checkpoint_every", 1),
    ("data_hp_batch_size", 1),
    ("data_hp_num_steps", 1),
]


@pytest.mark.parametrize("key, minimum", WIDGET_MINIMUMS)
def test_widgets_refuse_out_of_range_values(time_machine_path, key, minimum):
    at = app()
    at.switch_page(f"pages/{key.split('_')[0]}.py").run()
    assert at.number_input(key=key).min == minimum


def test_lr_widget_refuses_zero(time_machine_path):
    at = app()
    at.switch_page("pages/train.py").run()
    assert 0 < at.number_input(key="train_hp_lr").min <= 1e-6


def test_num_hiddens_too_large_for_memory_is_refused_at_start(time_machine_path, monkeypatch):
    """8,192 (the widget's max) needs ~1 GiB for parameters alone: pretend the device has 1 GiB free.

    Refused at Start, before any allocation and before a run is recorded, with 'lower num_hiddens'."""
    monkeypatch.setattr(importlib.import_module("charrnn.train"), "free_bytes", lambda device: 2**30)
    at = start(app(), **{**TINY, "hp_num_hiddens": 8192})
    msgs = errors(at)
    assert any("num_hiddens 8192" in m and "lower num_hiddens" in m for m in msgs), msgs
    assert at.session_state["train_error"], "refused at Start, not by the worker afterwards"
    assert not any(m.startswith("Training failed") for m in msgs), msgs
    time.sleep(1)
    at.run()
    no_exception(at)
    assert not any(m.startswith("Training failed") for m in errors(at)), errors(at)


def test_batch_larger_than_the_text_is_refused_on_the_data_page(time_machine_path):
    at = app()
    at.switch_page("pages/data.py").run()
    at.number_input(key="data_hp_max_tokens").set_value(500).run()
    at.number_input(key="data_hp_batch_size").set_value(1024).run()
    no_exception(at)
    assert any(m.startswith("Minibatches:") and "batch_size" in m for m in errors(at)), errors(at)


def test_divergence_shows_status_diverged_and_the_chart_marks_where(time_machine_path):
    settings = {**TINY, "hp_num_hiddens": 64, "hp_num_epochs": 200, "hp_lr": 100.0, "hp_clip": 0.0}
    at = wait_until_ended(start(app(), **settings))
    no_exception(at)
    assert [p.proto.text.split()[0] for p in at.get("progress")] == ["diverged"]
    msgs = errors(at)
    assert any("became infinite at epoch" in m and "lower lr" in m for m in msgs), msgs
    epoch = int(next(m for m in msgs if "at epoch" in m).split("at epoch ")[1].split(":")[0])
    assert epoch < 200
    # The chart says where: a marker (shape or annotation) at the epoch that diverged.
    spec = figure(at, "ppl")
    layout = spec.get("layout", {})
    marks = [s.get("x0") for s in layout.get("shapes", [])] + [a.get("x") for a in layout.get("annotations", [])]
    assert epoch in marks, layout


# ---- generation ------------------------------------------------------------------------------


class Upload(io.BytesIO):
    """What st.file_uploader returns, enough for the pages: bytes with a name and an id."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name, self.file_id = name, f"id-{name}"


def checkpoint_bytes() -> bytes:
    corpus = load_corpus(b"the time traveller for so it will be convenient to speak of him " * 20, mode="raw")
    model = ScratchModel(ModelConfig(len(corpus.vocab), 16), generator=torch.Generator().manual_seed(0))
    buffer = io.BytesIO()
    torch.save(make_checkpoint(model, corpus.vocab), buffer)
    return buffer.getvalue()


def with_checkpoint(monkeypatch, data: bytes, name: str = "model.pt") -> AppTest:
    """The Generate page with this file in its checkpoint uploader."""
    monkeypatch.setattr(st, "file_uploader", lambda *args, **kwargs: Upload(data, name))
    at = app()
    at.session_state["gen_model"] = "checkpoint file"
    at.switch_page("pages/generate.py").run()
    no_exception(at)
    return at


def generate(at: AppTest, prefix: str) -> AppTest:
    at.text_input(key="generate_gen_prefix").set_value(prefix)
    at.number_input(key="generate_gen_num").set_value(10)
    at.button(key="gen_go").click().run()
    no_exception(at)
    return at


def test_generate_with_an_empty_prefix_says_so(time_machine_path, monkeypatch):
    at = generate(with_checkpoint(monkeypatch, checkpoint_bytes()), "")
    msgs = errors(at)
    assert any("prefix is empty" in m and "type at least one character" in m for m in msgs), msgs


def test_prefix_chars_outside_the_vocab_are_listed_in_a_warning(time_machine_path, monkeypatch):
    at = generate(with_checkpoint(monkeypatch, checkpoint_bytes()), "time QZ€ traveller")
    assert not at.error, errors(at)
    assert any("not in the model's vocabulary" in w.value for w in at.warning), [w.value for w in at.warning]
    listed = " ".join(t.value for t in at.text)
    for ch in "QZ€":
        assert repr(ch) in listed, listed
    assert repr("t") not in listed
    assert at.code[0].value.startswith("time QZ€ traveller")


# ---- uploaded checkpoints --------------------------------------------------------------------


class RunsCode:
    """A pickle payload that creates `marker` when unpickled: open(marker, "w")."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def code_pickle_torch(marker: Path) -> bytes:
    return torch_bytes({"format": FORMAT, "state_dict": RunsCode(marker)})


def code_pickle_plain(marker: Path) -> bytes:
    return pickle.dumps({"format": FORMAT, "state_dict": RunsCode(marker)})


CHECKPOINTS = [
    ("truncated", lambda m: checkpoint_bytes()[:300], ["not a readable checkpoint", "complete"]),
    ("random bytes", lambda m: random.Random(0).randbytes(4096), []),  # refused; the wording varies with the bytes
    ("code pickle (torch.save)", code_pickle_torch, ["refused", "run code"]),
    ("code pickle (plain)", code_pickle_plain, ["refused", "run code"]),
    ("another format", lambda m: torch_bytes({"format": "x"}), ["not a charrnn checkpoint"]),
]


@pytest.mark.parametrize("case, make, needles", CHECKPOINTS, ids=[c[0] for c in CHECKPOINTS])
def test_bad_checkpoint_upload_is_refused_and_runs_no_code(
    time_machine_path, monkeypatch, tmp_path, case, make, needles
):
    marker = tmp_path / "code-ran"
    data = make(marker)
    at = with_checkpoint(monkeypatch, data, name="evil.pt")
    msgs = errors(at)
    assert len(msgs) == 1 and msgs[0].startswith("Checkpoint file: evil.pt"), msgs
    assert all(n in msgs[0] for n in needles), msgs
    assert "gen_go" not in [b.key for b in at.button]  # the page stopped: nothing to generate with
    assert not marker.exists(), "loading the upload ran code"
    if "code pickle" in case:  # the payload is real: an unsafe load would have run it
        if "torch" in case:
            torch.load(io.BytesIO(data), weights_only=False)
        else:
            pickle.loads(data)
        assert marker.exists()


def test_good_checkpoint_upload_generates(time_machine_path, monkeypatch):
    """The control for the cases above: the same path with a real checkpoint works."""
    at = generate(with_checkpoint(monkeypatch, checkpoint_bytes()), "time")
    assert not at.error, errors(at)
    assert len(at.code[0].value) == len("time") + 10
