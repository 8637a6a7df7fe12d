"""Keep the best (issue 22): every run with held-out evaluation keeps the checkpoint of its best evaluation beside
its last, and `patience` ends a run that stopped improving on held-out text."""

import math

import pytest

from charrnn.data import load_corpus, split_heldout
from charrnn.evaluate import heldout_perplexity
from charrnn.runs.recorder import load_stored, train_recorded
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig, train

# Small enough to overfit its 1,500 chars within a few dozen epochs.
FAST = {"num_hiddens": 64, "max_tokens": 1500, "batch_size": 8, "num_steps": 16, "device": "cpu", "val_tokens": 500}


@pytest.fixture(scope="module")
def text(time_machine_path):
    return load_corpus("time_machine", "book", 1500)


def test_patience_counts_evaluations_without_a_new_best(text):
    split = split_heldout(text, 500)
    settings = {**FAST, "val_tokens": 0, "num_epochs": 20, "eval_every": 2}
    result = train(split.train, text.vocab, TrainConfig(**settings, patience=3), val=split.val, best_val=1.0)
    assert result.patience_ran_out and [s.epoch for s in result.history] == [1, 2, 3, 4, 5, 6]  # 1.0: unbeatable
    result = train(split.train, text.vocab, TrainConfig(**settings), val=split.val, best_val=1.0)
    assert not result.patience_ran_out and len(result.history) == 20  # 0: the book's, never


def test_a_run_keeps_its_best_and_its_last_checkpoint_and_stops_when_patience_runs_out(text, tmp_path):
    store = RunStore(tmp_path)
    config = TrainConfig(num_epochs=300, eval_every=1, patience=4, optimizer="adam", lr=0.02, **FAST)
    run_id, result = train_recorded(store, text, config, checkpoint_every=1000)
    vals = [s.val_perplexity for s in result.history]
    best_epoch = result.history[vals.index(min(vals))].epoch
    assert result.patience_ran_out and len(vals) < 300 and vals[-4:] and min(vals[-4:]) > min(vals)
    run = store.run(run_id)
    assert run["status"] == "finished" and run["reason"].startswith("stopped early: no better held-out perplexity")
    # the best and the last, and no checkpoint kept only for an earlier best
    assert [c["epoch"] for c in store.checkpoints(run_id)] == [best_epoch, len(vals)]
    best = store.best_checkpoint(run_id)
    assert best["epoch"] == best_epoch and best["val_perplexity"] == pytest.approx(min(vals))
    model, _, _ = load_stored(store, run_id, best["epoch"])
    split = split_heldout(text, 500)
    assert heldout_perplexity(model, split.val, "cpu") == pytest.approx(min(vals), rel=1e-5)


def test_a_run_without_held_out_text_has_no_best(text, tmp_path):
    store = RunStore(tmp_path)
    run_id, _ = train_recorded(store, text, TrainConfig(num_epochs=2, **{**FAST, "val_tokens": 0}))
    assert store.best_checkpoint(run_id) is None and math.isfinite(store.history(run_id)[-1]["perplexity"])
