"""A study over issue 22's space: the optimizer with a learning-rate range per optimizer, weight decay and
max_tokens, beside the 5-gram yardstick; and the fixed --optimizer and --weight-decay.

Trials are test_tune's tiny ones (hidden 16, 2,000 or 3,000 chars, 2 epochs): a few seconds each.
"""

import json

import pytest
from stored import stored_checkpoint
from test_tune import STORE, TINY, load, parse

from charrnn.baseline import baseline
from charrnn.cli import tune
from charrnn.data import load_corpus, split_heldout
from charrnn.runs.store import RunStore

SPACE = "optimizer=sgd|adam,lr_sgd=0.5:2:log,lr_adam=0.001:0.01:log,weight_decay=0.00001:0.01:log"


def five_gram(max_tokens: int) -> float:
    """The 5-gram's held-out perplexity on the split a run of `max_tokens` (200 held-out chars) uses."""
    corpus = load_corpus("time_machine", "book", max_tokens, download=False)
    split = split_heldout(corpus, 200)
    return baseline(split.train, split.val, 5, len(corpus.vocab), smoothing="kneser-ney").val_perplexity


def test_each_trial_trains_its_optimizer_learning_rate_decay_and_text(tmp_path, capsys, monkeypatch, time_machine_path):
    """Three trials (seed 5 draws both optimizers and both texts): each run trained the point its trial
    drew, Adam as AdamW (its moments in the checkpoint); each trial's value is its best held-out figure,
    kept as a checkpoint; the table ends with the 5-gram's figure on each max_tokens' held-out text."""
    home = tmp_path / "home"
    monkeypatch.setenv("CHARRNN_HOME", str(home))
    storage = STORE.format(tmp=tmp_path)
    argv = ["--study", "opt", "--storage", storage, "--trials", "3", "--epochs", "2", "--pruner", "none"]
    argv += ["--space", f"{SPACE},max_tokens=2000|3000", "--sampler", "random", "--seed", "5"]
    assert tune.run(parse(*argv, *TINY)) == 0
    out = capsys.readouterr().out.splitlines()
    trials, store = load(storage, "opt").trials, RunStore(home)
    drawn = {(t.params["optimizer"], t.params["max_tokens"]) for t in trials}
    assert {o for o, _ in drawn} == {"sgd", "adam"} and {n for _, n in drawn} == {2000, 3000}, drawn
    for t in trials:
        own = f"lr_{t.params['optimizer']}"
        assert set(t.params) == {"optimizer", own, "weight_decay", "max_tokens"}  # never the other's lr
        run = store.run(t.user_attrs["run_id"])
        want = {"lr": t.params[own], **{k: t.params[k] for k in ("optimizer", "weight_decay", "max_tokens")}}
        assert {k: run["config"][k] for k in want} == want
        assert run["corpus"]["max_tokens"] == t.params["max_tokens"]  # the text was cut to it
        ckpt = stored_checkpoint(store, run["id"])
        assert ("optimizer_state" in ckpt) == (t.params["optimizer"] == "adam")
        assert store.best_checkpoint(run["id"])["val_perplexity"] == pytest.approx(t.value)
    yardstick = ", ".join(f"{five_gram(n):.2f} (max_tokens {n})" for n in (2000, 3000))
    assert out[-1] == f"5-gram (counting), on each max_tokens' held-out text: {yardstick}"


def test_the_optimizer_and_weight_decay_are_fixed_settings_too(tmp_path, capsys, monkeypatch, time_machine_path):
    home = tmp_path / "home"
    monkeypatch.setenv("CHARRNN_HOME", str(home))
    argv = ["--study", "adam", "--storage", STORE.format(tmp=tmp_path), "--trials", "1", "--epochs", "1", "--json"]
    argv += ["--space", "lr=0.001:0.01:log", "--optimizer", "adam", "--weight-decay", "0.05"]
    assert tune.run(parse(*argv, *TINY)) == 0
    report = json.loads(capsys.readouterr().out)
    run = RunStore(home).run(report["trials"][0]["run_id"])
    assert (run["config"]["optimizer"], run["config"]["weight_decay"]) == ("adam", 0.05)
    assert report["five_gram"] == [{"max_tokens": 2000, "val_perplexity": pytest.approx(five_gram(2000))}]
