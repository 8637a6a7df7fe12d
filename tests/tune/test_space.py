"""The search space of charrnn tune: parsing, its limits, the per-optimizer learning rates, the text a
trial of a varied max_tokens trains on, and the samplers and pruners built from it. No trial trains here."""

from dataclasses import replace

import optuna
import pytest
import torch

from charrnn.data import load_corpus
from charrnn.train import TrainConfig
from charrnn.tune.plan import Search
from charrnn.tune.space import (
    MAX_CHOICES,
    MAX_LINE,
    FieldError,
    check_learning_rates,
    check_space,
    corners,
    grid,
    parse_space,
    trial_config,
    trial_corpus,
)
from charrnn.tune.study import make_pruner, make_sampler

OPTIMIZERS = "optimizer=sgd|adam,lr_sgd=0.25:4:log,lr_adam=0.0005:0.01:log,weight_decay=0.00001:0.1:log"


def test_a_space_parses_into_ranges_and_choices():
    space = parse_space("lr=0.1:10:log, num_hiddens=128|256|512,clip=0.25:4,sampling=sequential|random")
    assert list(space) == ["lr", "num_hiddens", "clip", "sampling"]
    assert (space["lr"].low, space["lr"].high, space["lr"].log) == (0.1, 10.0, True)
    assert space["num_hiddens"].choices == (128, 256, 512)
    assert space["sampling"].choices == ("sequential", "random")
    assert space["lr"].points() == [0.1, 1.0, 10.0]  # the grid: geometric for a log range
    assert space["clip"].points() == [0.25, 2.125, 4.0]
    assert parse_space("num_steps=8:10").get("num_steps").points() == [8, 9, 10]


def test_a_space_takes_the_optimizer_its_learning_rates_weight_decay_and_max_tokens():
    space = parse_space(f"{OPTIMIZERS},max_tokens=10000|0")
    assert space["optimizer"].choices == ("sgd", "adam")
    assert (space["lr_adam"].low, space["lr_adam"].high, space["lr_adam"].log) == (0.0005, 0.01, True)
    assert space["weight_decay"].bounds() == [0.00001, 0.1]
    assert space["max_tokens"].choices == (10000, 0)  # 0: the whole text
    assert space["lr_sgd"].setting(2.0) == {"lr": 2.0, "optimizer": "sgd"}  # a TrainConfig's fields


MANY = "|".join(str(i) for i in range(1, 10_001))
BAD_SPACES = [
    ("", "the space is empty"),
    (" , ", "the space is empty"),
    ("foo=1:2", "unknown hyperparameter 'foo'"),
    ("val_tokens=100|200", "val_tokens cannot vary"),
    ("lr=10:0.1", "the low bound 10 is above the high bound 0.1"),
    ("lr=0:1:log", "a log range must stay above 0"),
    ("clip=-1:1:log", "a log range must stay above 0"),
    ("lr=0.1:ten", "lr takes a number, not 'ten'"),
    ("num_hiddens=12.5|16", "num_hiddens takes a whole number, not '12.5'"),
    ("lr=nan:1", "lr takes a finite number"),
    ("lr=1:2:sqrt", "is not low:high or low:high:log"),
    ("sampling=1:2", "sampling takes choices"),
    ("lr", "'lr' is not name=SPEC"),
    ("lr=1:2,lr=3:4", "lr appears twice"),
    ("num_hiddens=16|16", "num_hiddens lists the choice 16 twice"),
    ("cell=rnn|transformer", "cell takes one of rnn, gru, lstm, not 'transformer'"),
    ("num_layers=1.5:3", "num_layers takes a whole number, not '1.5'"),
    ("model=scratch|keras", "model takes one of scratch, concise, not 'keras'"),
    ("optimizer=sgd|rmsprop", "optimizer takes one of sgd, adam, not 'rmsprop'"),
    ("max_tokens=0:50000", "max_tokens=0:50000: 0 means the whole text; list choices"),
    # long input: a one-line message that repeats a little of it, never all of it
    (f"num_hiddens={MANY}", f"num_hiddens lists 10,000 choices, at most {MAX_CHOICES}; give a range"),
    (f"num_hiddens={MANY[: MANY.index('|100|')]}|1", "num_hiddens lists the choice 1 twice"),
    ("x" * 100_000 + "=1:2", "unknown hyperparameter 'xxxxx"),
    ("lr=0.1:" + "9" * 5000, "lr takes a finite number, not '9999"),
    ("lr=0.1:1:" + "l" * 5000, "is not low:high or low:high:log"),
    ("cell=" + "q" * 5000, "(5,000 characters)"),
    ("y" * 5000, "is not name=SPEC"),
]


@pytest.mark.parametrize(("text", "message"), BAD_SPACES, ids=lambda v: v[:40] if isinstance(v, str) else v)
def test_a_bad_space_is_refused_in_one_short_line_naming_what_is_wrong(text, message):
    with pytest.raises(FieldError) as e:
        parse_space(text)
    assert message in str(e.value) and e.value.field == "space", str(e.value)[:400]
    assert len(str(e.value)) <= MAX_LINE and "\n" not in str(e.value)


def test_a_hundred_choices_are_the_most_a_dimension_takes():
    assert len(parse_space("num_hiddens=" + "|".join(str(i) for i in range(1, 101)))["num_hiddens"].choices) == 100
    with pytest.raises(FieldError, match="lists 101 choices, at most 100"):
        parse_space("num_hiddens=" + "|".join(str(i) for i in range(1, 102)))


LEARNING_RATES = [
    ("optimizer=sgd|adam", "sgd", "optimizer varies: give each optimizer its learning-rate range (lr_sgd, lr_adam)"),
    ("optimizer=sgd|adam,lr=0.1:1", "sgd", "optimizer varies: give each optimizer its learning-rate range"),
    ("optimizer=sgd|adam,lr_adam=0.001:0.01", "sgd", "range (lr_sgd), e.g. lr_sgd=0.25:4:log,lr_adam="),
    ("lr=0.1:1,lr_adam=0.001:0.01", "adam", "give lr or lr_adam, not both"),
    ("lr_adam=0.001:0.01", "sgd", "lr_adam is the lr of adam trials, but every trial uses sgd"),
    ("optimizer=sgd,lr_adam=0.001:0.01", "adam", "lr_adam is the lr of adam trials, but every trial uses sgd"),
]


@pytest.mark.parametrize(("text", "optimizer", "message"), LEARNING_RATES)
def test_each_optimizer_the_search_gives_has_one_learning_rate(text, optimizer, message):
    with pytest.raises(FieldError) as e:
        check_learning_rates(parse_space(text), TrainConfig(optimizer=optimizer))
    assert message in str(e.value) and e.value.field == "space"


def test_a_fixed_optimizer_takes_lr_or_its_own_range():
    for text, optimizer in (("lr=0.001:0.01", "adam"), ("lr_adam=0.001:0.01", "adam"), (OPTIMIZERS, "sgd")):
        check_learning_rates(parse_space(text), TrainConfig(optimizer=optimizer))  # no error


@pytest.mark.parametrize("sampler", [optuna.samplers.RandomSampler(seed=0), optuna.samplers.TPESampler(seed=0)])
def test_a_trial_draws_only_the_learning_rate_of_its_optimizer(sampler):
    """Define-by-run: each trial asks for lr_sgd or lr_adam, by the optimizer it drew, and trains it as lr;
    TPE models each range from its own trials (no error when half the trials lack a parameter)."""
    space, base = parse_space(OPTIMIZERS), TrainConfig()
    study = optuna.create_study(sampler=sampler)
    for i in range(16):
        trial = study.ask()
        config = trial_config(space, base, trial)
        own = f"lr_{config.optimizer}"
        assert set(trial.params) == {"optimizer", own, "weight_decay"}
        assert config.lr == trial.params[own] and space[own].low <= config.lr <= space[own].high
        assert config.weight_decay == trial.params["weight_decay"]
        study.tell(trial, config.lr * (1 + i % 3))
    assert {t.params["optimizer"] for t in study.trials} == {"sgd", "adam"}


def test_the_grid_sampler_refuses_per_optimizer_learning_rates():
    with pytest.raises(FieldError, match="the grid sampler cannot search lr_sgd and lr_adam") as e:
        grid(parse_space(OPTIMIZERS))
    assert e.value.field == "sampler"


def test_a_trials_text_is_what_load_corpus_gives_for_its_max_tokens(time_machine_path):
    whole = load_corpus("time_machine", "book", 0, download=False)
    for max_tokens in (2000, 0):
        cut, loaded = trial_corpus(whole, max_tokens), load_corpus("time_machine", "book", max_tokens, download=False)
        assert cut.corpus == loaded.corpus and cut.fingerprint() == loaded.fingerprint()
        assert cut.vocab.idx_to_token == loaded.vocab.idx_to_token


def test_the_shortest_text_is_checked_with_the_largest_shapes(time_machine_path):
    """The corner is the smallest max_tokens (0 is the whole text, the longest) with the most steps."""
    space = parse_space("max_tokens=5000|0|300,num_steps=8|128")
    assert corners(space) == [{"num_steps": 128, "max_tokens": 300}]
    whole = load_corpus("time_machine", "book", 0, download=False)
    base = TrainConfig(batch_size=4, val_tokens=200, device="cpu")
    cpu = torch.device("cpu")
    check_space(parse_space("max_tokens=5000|0|300"), base, whole, cpu)  # alone, 300 chars hold a minibatch
    with pytest.raises(FieldError, match="num_steps=128, max_tokens=300: ") as e:
        check_space(space, base, whole, cpu)
    assert e.value.dim == "num_steps"


def test_samplers_and_pruners_are_optunas_own():
    base = TrainConfig(num_epochs=30, eval_every=10)
    search = Search("s", parse_space("lr=0.1:10:log,num_hiddens=8|16"), base, sampler="grid", pruner="hyperband")
    sampler, pruner = make_sampler(search), make_pruner(search)
    assert isinstance(sampler, optuna.samplers.GridSampler) and isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert sampler._search_space == {"lr": [0.1, 1.0, 10.0], "num_hiddens": [8, 16]}
    assert (pruner._min_resource, pruner._max_resource) == (10, 30)
    median = make_pruner(replace(search, pruner="median"))
    assert (median._n_startup_trials, median._n_warmup_steps) == (2, 11)  # judged from the 2nd evaluation on
