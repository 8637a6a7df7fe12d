"""Hostile input, table-driven: every case gets a clear error naming the field or file, never a crash."""

import importlib
import math

import pytest

from charrnn.data import MAX_TEXT_BYTES, MAX_VOCAB, CorpusError, load_corpus
from charrnn.runs.recorder import train_recorded
from charrnn.runs.store import RunStore
from charrnn.train import MAX_HIDDENS, TrainConfig, train

TEXTS = [
    ("empty", b"", "empty"),
    ("whitespace only", b" \n\t\r\n  ", "empty"),
    ("PNG bytes", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10", "binary"),
    ("invalid UTF-8", b"the time traveller \xff\xfe said", "not valid UTF-8"),
    ("over the size limit", b"a" * (MAX_TEXT_BYTES + 1), "limit is 20 MiB"),
    ("vocab explosion", "".join(chr(0x4E00 + i) for i in range(MAX_VOCAB + 10)).encode(), "distinct characters"),
]


@pytest.mark.parametrize("label, payload, needle", TEXTS, ids=[t[0] for t in TEXTS])
def test_bad_texts_are_refused_with_a_clear_message(label, payload, needle):
    with pytest.raises(CorpusError, match=needle):
        load_corpus(payload, mode="raw", max_tokens=0)


def test_one_repeated_char_trains_to_perplexity_one():
    c = load_corpus(b"a" * 3000, mode="raw", max_tokens=0)
    assert c.vocab.idx_to_token == ["<unk>", "a"]
    result = train(c.corpus, c.vocab, TrainConfig(num_epochs=5, num_hiddens=16, device="cpu"))
    assert result.history[-1].perplexity < 1.5


def test_text_shorter_than_one_minibatch_names_the_largest_settings_that_fit():
    c = load_corpus(b"the time traveller " * 30, mode="raw", max_tokens=0)  # 570 chars
    with pytest.raises(ValueError, match=r"batch_size at most 15 .*num_steps at most 17"):
        train(c.corpus, c.vocab, TrainConfig(num_epochs=1, device="cpu"))


HYPERPARAMETERS = [
    ("batch_size", 0),
    ("batch_size", -3),
    ("num_steps", 0),
    ("num_hiddens", 0),
    ("num_epochs", 0),
    ("lr", 0.0),
    ("lr", -1.0),
    ("lr", math.nan),
    ("clip", -1.0),
    ("clip", math.inf),
    ("max_tokens", -5),
    ("sampling", "shuffled"),
    ("batch_size", 2.5),
    ("seed", "x"),
]


@pytest.mark.parametrize("field, value", HYPERPARAMETERS)
def test_out_of_range_hyperparameters_name_the_field(field, value):
    with pytest.raises(ValueError, match=field.replace("clip", "clip")):
        TrainConfig(**{field: value}).validate()


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    c = load_corpus(b"the time traveller for so it will be convenient to speak of him " * 60, mode="raw", max_tokens=0)
    store = RunStore(tmp_path)
    config = TrainConfig(num_epochs=50, lr=100.0, clip=0.0, num_hiddens=64, device="cpu", batch_size=8)
    run_id, result = train_recorded(store, c, config, checkpoint_every=1)
    assert result.diverged and len(result.history) < 50
    run = store.run(run_id)
    assert run["status"] == "diverged" and f"epoch {result.history[-1].epoch}" in run["reason"]
    last = store.last_checkpoint(run_id)
    if len(result.history) > 1:  # epochs before the divergent one were checkpointed; the bad one was not
        assert last is not None and last["epoch"] == result.history[-2].epoch
    assert all(math.isfinite(e["loss"]) for e in store.history(run_id)[:-1])


@pytest.mark.parametrize("run_id", ["../../etc/passwd", "/etc/passwd", "..", "a/../../b", "x' OR '1'='1"])
def test_run_ids_typed_by_users_never_reach_the_file_system(tmp_path, run_id):
    store = RunStore(tmp_path)
    for action in (store.run, store.checkpoints, store.last_checkpoint, store.delete, store.history):
        with pytest.raises(ValueError, match="no run with id"):
            action(run_id)
    assert {p.name for p in tmp_path.iterdir()} <= {"runs.sqlite", "runs.sqlite-shm", "runs.sqlite-wal"}


def test_num_hiddens_too_large_for_memory_is_refused_before_allocation(monkeypatch):
    """The widest model allowed (8,192) on a device with 1 GiB free: its parameters alone need more."""
    monkeypatch.setattr(importlib.import_module("charrnn.train"), "free_bytes", lambda device: 2**30)
    c = load_corpus(b"the time traveller " * 100, mode="raw", max_tokens=0)
    config = TrainConfig(num_epochs=1, num_hiddens=MAX_HIDDENS, batch_size=4, num_steps=5, device="cpu")
    with pytest.raises(ValueError, match=r"num_hiddens 8192 .* needs about \d+\.\d GiB.*lower num_hiddens"):
        train(c.corpus, c.vocab, config)
    with pytest.raises(ValueError, match="num_hiddens must be at most"):
        TrainConfig(num_hiddens=10**6).validate()
