"""Optuna's own cost per Tune trial, against the training it organises.

    python -m tools.tune_overhead [--trials 16] [--epochs 30] [--eval-every 10] [--json]

Runs a study on a fresh SQLite storage with exactly the calls a `charrnn tune` trial makes (ask, the
suggestions of the default space, the user attrs, one report and prune check per evaluation, tell),
with the same sampler, pruner and heartbeat, but without training; then trains one real trial of the
same budget (the recipe, held-out evaluation included) on the CPU. Prints the per-trial cost of each
and the ratio. The process start and the device queue a real trial also has are not Optuna's and are
left out.
"""

import argparse
import json
import math
import random
import tempfile
import time
from dataclasses import replace

import optuna

from charrnn.book import train_heldout
from charrnn.cli.tune import DEFAULT_SPACE
from charrnn.data import load_corpus
from charrnn.train import TrainConfig
from charrnn.tune.plan import Search
from charrnn.tune.space import parse_space
from charrnn.tune.storage import open_storage
from charrnn.tune.study import make_pruner, make_sampler


def optuna_seconds_per_trial(search: Search, storage_url: str) -> float:
    """Mean wall seconds of one trial's Optuna calls, training left out."""
    storage = open_storage(storage_url, search.heartbeat)
    study = optuna.create_study(
        study_name=search.study, storage=storage, sampler=make_sampler(search), pruner=make_pruner(search)
    )
    rng = random.Random(0)
    every, epochs = search.base.eval_every, search.base.num_epochs
    evaluations = sorted({e for e in range(every, epochs + 1, every)} | {epochs})

    def objective(trial):
        for key, value in (("run_id", None), ("epochs", 0), ("reason", "")):
            trial.set_user_attr(key, value)
        params = {d.name: d.suggest(trial) for d in search.space.values()}
        trial.set_user_attr("run_id", "0123456789")
        value = 20 + 10 * rng.random() + math.log(params["lr"]) ** 2
        for epoch in evaluations:
            value *= 0.8
            trial.report(value, epoch)
            if epoch < epochs and trial.should_prune():
                raise optuna.TrialPruned()
        trial.set_user_attr("epochs", epochs)
        return value

    begin = time.perf_counter()
    study.optimize(objective, n_trials=search.trials)
    return (time.perf_counter() - begin) / search.trials


def training_seconds(config: TrainConfig) -> float:
    corpus = load_corpus("time_machine", "book", config.max_tokens)
    begin = time.perf_counter()
    train_heldout(corpus, config)
    return time.perf_counter() - begin


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    base = replace(TrainConfig(), num_epochs=args.epochs, eval_every=args.eval_every, device="cpu").validate()
    search = Search("overhead", parse_space(DEFAULT_SPACE), base, trials=args.trials)
    with tempfile.TemporaryDirectory() as tmp:
        optuna_s = optuna_seconds_per_trial(search, f"sqlite:///{tmp}/tune.sqlite")
    train_s = training_seconds(base)
    figures = {
        "trials": args.trials,
        "epochs": args.epochs,
        "eval_every": args.eval_every,
        "optuna_seconds_per_trial": optuna_s,
        "training_seconds_per_trial": train_s,
        "overhead_percent": 100 * optuna_s / train_s,
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"Optuna per trial: {optuna_s * 1000:.1f} ms ({args.trials} trials, SQLite, eval every {args.eval_every}); "
        f"a {args.epochs}-epoch trial trains in {train_s:.2f} s on the CPU: {figures['overhead_percent']:.2f}%"
    )


if __name__ == "__main__":
    main()
