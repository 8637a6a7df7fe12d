"""`python -m charrnn tune`: a hyperparameter search on Optuna, one worker per process.

    python -m charrnn tune --study NAME [--storage URL] [--trials N] [--epochs E]
        [--space "lr=0.1:10:log,num_hiddens=128|256|512,clip=0.25:4:log,cell=gru|lstm,num_layers=1:3"]
        [--space "optimizer=sgd|adam,lr_sgd=0.25:4:log,lr_adam=0.0005:0.01:log,weight_decay=1e-5:0.1:log"]
        [--sampler tpe|random|grid] [--pruner median|hyperband|none] [--seed S] [--parallel K] [--json]
        [the train flags, for every hyperparameter not in the space]

Run it in several terminals (or machines, with a shared `--storage`) with the same `--study` and
settings, and the workers share one study: `--trials` is per worker. Each trial is a run in this
machine's run store, named "<study> trial <n>". A worker trains one trial at a time under a lock of
its own process; like `charrnn train`, it does not see the app's device lock, so it trains beside
the app. Ctrl-C ends the current trial after its epoch (FAIL, user attr "stopped"), prints the table
and exits with status 130; a second Ctrl-C quits at once. `--parallel K` asks for K trials at once
and trains those of one shape together in this process, batched (`charrnn.tune.parallel`).

A worker sends a heartbeat every `--heartbeat` seconds (10); a trial whose worker died (SIGKILL, a lost
machine) is failed after 3 missed heartbeats by the next worker that starts a trial, and run again
once with the same parameters. The median pruner judges a trial from its second evaluation on, once
2 trials have finished (see `charrnn.tune.study.make_pruner`); trials are evaluated at least 5 times
unless `--eval-every` says otherwise, and a cadence the pruner cannot act on is said before the study.
"""

import argparse
import json
import os
import signal
import sys
from contextlib import contextmanager

import optuna
from sqlalchemy.exc import SQLAlchemyError

from charrnn.batches import SAMPLINGS
from charrnn.cli.argtypes import (
    at_most,
    evaluation_cadence,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    weight_decay,
)
from charrnn.cli.parser import add_model_args
from charrnn.data import MODES, load_corpus
from charrnn.device import resolve_device
from charrnn.runs.database import masked
from charrnn.runs.devicequeue import DeviceQueue
from charrnn.train import OPTIMIZERS, STATES, TrainConfig
from charrnn.tune.plan import MAX_PARALLEL, Search
from charrnn.tune.space import FieldError, one_line, parse_space
from charrnn.tune.storage import first_line, storage_url, trial_row, trial_rows
from charrnn.tune.study import PRUNERS, SAMPLERS, eval_cadence, pruning_note, yardstick
from charrnn.tune.tuner import Tuner

DEFAULT_SPACE = "lr=0.25:4:log,clip=0.25:4:log,num_hiddens=256|512|1024"  # the recipe (1, 1, 512) at the centre
PROG = "python -m charrnn tune"


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--study", required=True, help="the study's name; workers with the same name share it")
    p.add_argument("--storage", help="a SQLAlchemy URL (default: $CHARRNN_TUNE_STORAGE, else tune.sqlite by the runs)")
    p.add_argument("--trials", type=positive_int, default=8, help="trials this worker runs (default: %(default)s)")
    p.add_argument("--epochs", type=positive_int, default=30, help="each trial's budget (default: %(default)s)")
    p.add_argument("--space", default=DEFAULT_SPACE, help="name=low:high[:log] or name=a|b|c, comma-separated")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="tpe, random or grid (default: %(default)s)")
    p.add_argument("--pruner", choices=PRUNERS, default="median", help="ends poor trials early (default: %(default)s)")
    p.add_argument("--seed", type=non_negative_int, default=None, help="seeds the sampler (default: none)")
    p.add_argument(
        "--parallel",
        type=at_most(positive_int, MAX_PARALLEL),
        default=1,
        help="trials asked at once and trained batched in this process (one-layer scratch rnn; default: %(default)s)",
    )
    p.add_argument("--heartbeat", type=positive_int, default=10, help="seconds between a worker's heartbeats")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.add_argument("--corpus", default="time_machine", help="time_machine, fallback or a .txt path")
    p.add_argument("--mode", choices=MODES, default="book", help="book or raw preprocessing")
    p.add_argument("--max-tokens", type=non_negative_int, default=d.max_tokens, help="train on the first N chars")
    p.add_argument("--val-tokens", type=positive_int, default=d.val_tokens, help="held-out chars trials are judged on")
    p.add_argument(
        "--eval-every",
        type=evaluation_cadence,
        help="epochs between evaluations, or 1/k of one such as 0.25 (default: 5 or more a trial, for pruning)",
    )
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    p.add_argument("--num-steps", type=positive_int, default=d.num_steps)
    p.add_argument("--num-hiddens", type=positive_int, default=d.num_hiddens)
    p.add_argument("--lr", type=positive_float, default=d.lr)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer, help="'sgd' (the book's) or 'adam' (AdamW)")
    p.add_argument("--weight-decay", type=weight_decay, default=d.weight_decay, help="0 (the book's) for none")
    p.add_argument("--clip", type=non_negative_float, default=d.clip, help="0 turns clipping off")
    p.add_argument("--sampling", choices=SAMPLINGS, default=d.sampling)
    p.add_argument("--state", choices=STATES, default=d.state)
    add_model_args(p)  # --model, --cell, --num-layers, --dropout, as train takes them
    p.add_argument("--device", default=d.device, help="auto (CUDA if present), cpu, cuda or cuda:N")


# The train flags a worker takes as they are (each a TrainConfig field of the same name).
FIXED = ("lr", "batch_size", "num_steps", "num_hiddens", "max_tokens", "sampling", "clip", "device")
FIXED += ("val_tokens", "eval_every", "state", "model", "cell", "num_layers", "dropout", "optimizer", "weight_decay")
FIXED += ("weight_drop", "ngram_order", "ngram_weight")


# The flags a Search takes by name.
SEARCH_FLAGS = ("trials", "sampler", "pruner", "seed", "storage", "heartbeat", "parallel")


def base_config(args) -> TrainConfig:
    """The fixed hyperparameters; the trials' training seed is the recipe's, so that they differ only
    in what the space varies. A sample is taken at the last epoch of every trial (Tune's best-trial card).
    Without --eval-every, trials are evaluated often enough for the pruner (`eval_cadence`)."""
    fixed = {name: getattr(args, name) for name in FIXED}
    fixed["eval_every"] = args.eval_every or eval_cadence(args.epochs)
    predict_every = 10 if args.epochs % 10 == 0 else args.epochs
    return TrainConfig(num_epochs=args.epochs, predict_every=predict_every, **fixed).validate()


def prepare(args) -> Tuner:
    """Check everything a user gave, load the text, open (or join) the study; FieldError or ValueError."""
    space = parse_space(args.space)
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise FieldError("device", str(e)) from None
    base = base_config(args)
    corpus = load_corpus(args.corpus, args.mode, 0 if "max_tokens" in space else args.max_tokens)  # trials cut theirs
    search = Search(args.study, space, base, **{k: getattr(args, k) for k in SEARCH_FLAGS})
    tuner = Tuner(search, corpus, device_lock=DeviceQueue(), spawning=children_keep_sigint_away)
    tuner.prepare(device)
    return tuner


@contextmanager
def children_keep_sigint_away():
    """A training process started in here ignores Ctrl-C (an ignored signal stays ignored across exec):
    this worker stops it cleanly instead. A Ctrl-C in these few milliseconds is lost."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def run(args) -> int:
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per trial says it (no tracebacks)
    try:
        tuner = prepare(args)
    except ValueError as e:  # FieldError and CorpusError included
        flag = f"--{e.field.replace('_', '-')}: " if isinstance(e, FieldError) else ""
        print(one_line(f"{PROG}: error: {flag}{e}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    base = tuner.search.base
    note = pruning_note(args.pruner, base.eval_every, base.num_epochs)
    if note:  # said before the first trial: a study that cannot prune runs every trial to its end
        print(f"note: {note} (--eval-every, --epochs)", file=sys.stderr, flush=True)
    if not args.json:
        tuner.on_trial = lambda study, trial: print(trial_line(trial_row(trial)), flush=True)

    def on_sigint(*_):
        # The next Ctrl-C's handler first: one pressed as soon as the line below shows must quit at once (in CI a
        # second SIGINT sent on reading it found this handler still in place, and only stopped after the epoch).
        signal.signal(signal.SIGINT, on_second_sigint)
        tuner.request_stop()
        os.write(2, b"stopping after this trial's epoch (Ctrl-C again to quit at once)\n")

    def on_second_sigint(*_):
        tuner.quit_asked = True  # --parallel trains in this process and reads it between minibatches
        if tuner.search.parallel == 1:  # this worker waits on a training process: interrupt the wait
            raise KeyboardInterrupt
        # Not raised while training here: Python drops an exception raised inside a weakref callback
        # (printing "Exception ignored"; seen here in SQLAlchemy's, while a group trained).

    old = signal.signal(signal.SIGINT, on_sigint)
    try:
        study = tuner.run()
    except KeyboardInterrupt:
        tuner.stop()
        print("interrupted", file=sys.stderr)
        return 130
    except (SQLAlchemyError, OSError, RuntimeError) as e:  # e.g. the database went away mid-study
        tuner.stop()
        print(one_line(f"{PROG}: error: the search stopped: {first_line(e)}"), file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, old)
    counting = yardsticks(tuner, study)
    where = masked(storage_url(args.storage))
    print(report(study, counting) if args.json else table(trial_rows(study), study.study_name, where, counting))
    return 130 if tuner.stop_asked else 0


def yardsticks(tuner: Tuner, study) -> dict[int, float]:
    """max_tokens -> the 5-gram's held-out perplexity on the text the trials of that max_tokens are
    judged on (one entry unless the space varies max_tokens)."""
    search = tuner.search
    values = sorted({t.params.get("max_tokens", search.base.max_tokens) for t in study.get_trials(deepcopy=False)})
    found = {n: yardstick(tuner.corpus, n, search.base.val_tokens) for n in values or [search.base.max_tokens]}
    return {n: v for n, v in found.items() if v is not None}


def report(study, counting: dict[int, float]) -> str:
    """The --json object: strict JSON (no NaN or Infinity; null where there is no value)."""
    rows = trial_rows(study)
    best = next((r for r in rows if r["best"]), None)
    keys = ("number", "state", "params", "value", "epochs", "run_id")
    return json.dumps(
        {
            "study": study.study_name,
            "best_params": best["params"] if best else None,
            "best_value": best["value"] if best else None,
            "trials": [{k: r[k] for k in keys} for r in rows],
            "five_gram": [{"max_tokens": n, "val_perplexity": v} for n, v in counting.items()],
        },
        allow_nan=False,
    )


def fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trial_line(r: dict) -> str:
    """One finished trial: state, held-out perplexity, epochs run, parameters, run and reason."""
    value = f"{r['value']:.3f}" if r["value"] is not None else "-"
    params = " ".join(f"{k}={fmt(v)}" for k, v in r["params"].items())
    line = f"trial {r['number']:3d}  {r['state']:8}  held-out {value:>8}  {r['epochs']:4d} epochs  {params}"
    line += f"  run {r['run_id']}" if r["run_id"] else ""
    return line + (f"  ({r['reason']})" if r["reason"] else "")


def counting_text(counting: dict[int, float]) -> str:
    """The yardstick as the table's last line says it, e.g. "5-gram (counting): 5.18"."""
    if len(counting) == 1:
        return f"5-gram (counting): {next(iter(counting.values())):.2f} on the same held-out text"
    per = ", ".join(f"{v:.2f} (max_tokens {n})" for n, v in counting.items())
    return f"5-gram (counting), on each max_tokens' held-out text: {per}" if counting else ""


def table(rows: list[dict], study: str, where: str, counting: dict[int, float]) -> str:
    """Every trial of the study (all workers'), the best marked with '*', and the 5-gram's figure."""
    names = list(dict.fromkeys(k for r in rows for k in r["params"]))
    counts = {s: sum(r["state"] == s for r in rows) for s in dict.fromkeys(r["state"] for r in rows)}
    head = f"study {study!r} in {where}: {len(rows)} trials (" + ", ".join(
        f"{n} {s.lower()}" for s, n in counts.items()
    )
    lines = [
        head + ")",
        f"  {'#':>4}  {'state':8}  {'held-out':>8}  {'epochs':>6}  " + "  ".join(f"{n:>11}" for n in names) + "  run",
    ]
    for r in rows:
        value = f"{r['value']:.3f}" if r["value"] is not None else "-"
        params = "  ".join(f"{fmt(r['params'].get(n, '')):>11}" for n in names)
        mark = "*" if r["best"] else " "
        lines.append(
            f"{mark} {r['number']:>4}  {r['state']:8}  {value:>8}  {r['epochs']:>6}  {params}  {r['run_id'] or '-'}"
        )
    best = next((r for r in rows if r["best"]), None)
    lines.append(
        f"best (*): trial {best['number']}, held-out perplexity {best['value']:.3f}" if best else "no trial completed"
    )
    return "\n".join(lines + [counting_text(counting)] * bool(counting))
