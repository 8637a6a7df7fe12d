"""`python -m charrnn`: info, train, generate, runs, bench, reproduce, baseline, tune. Defaults are the book's recipe.

Every argument is checked before any text or checkpoint is read, and every error a user can cause is
one line naming the flag (exit status 2). Ctrl-C or SIGTERM stops `train` as the app's Stop button does.
Each command's module (`charrnn.cli.train`, `.runs`, `.bench`, `.tune`) reads its flags and calls the library.
"""

import os
import sqlite3
import sys
from dataclasses import asdict

from sqlalchemy.exc import SQLAlchemyError

from charrnn.baseline import baseline
from charrnn.batches import SeqDataLoader
from charrnn.book import CHAPTERS, format_table, run_experiments
from charrnn.cli import bench
from charrnn.cli.console import print_json, stop_on_signals
from charrnn.cli.flags import apply_preset, flagged
from charrnn.cli.parser import build_parser
from charrnn.cli.runs import cmd_generate, cmd_runs
from charrnn.cli.train import cmd_train
from charrnn.data import load_corpus, split_heldout
from charrnn.device import resolve_device
from charrnn.runs.checkpoint import CheckpointError
from charrnn.runs.database import ENV, masked, store_url
from charrnn.runs.recorder import train_recorded
from charrnn.runs.store import RunStore, home_dir
from charrnn.train import TrainConfig


def cmd_info(args) -> int:
    settings = ("batch_size", "num_steps", "num_hiddens", "max_tokens", "sampling")
    TrainConfig(**{k: getattr(args, k) for k in settings}).validate()
    c = load_corpus(args.corpus, args.mode, args.max_tokens)
    split = split_heldout(c, args.val_tokens)
    loader = SeqDataLoader(split.train, args.batch_size, args.num_steps, args.sampling, seed=0)
    b, t, v, h = args.batch_size, args.num_steps, len(c.vocab), args.num_hiddens
    info = {
        "corpus": c.name,
        "mode": c.mode,
        "corpus_length": len(c),
        "text_length": len(c.text),
        "num_lines": c.num_lines,
        "train_length": len(split.train),
        "train_range": list(split.train_range),
        "val_range": list(split.val_range) if split.val_range else None,
        "val_length": len(split.val),
        "vocab_size": v,
        "idx_to_token": c.vocab.idx_to_token,
        "num_batches": len(loader),
        "x_shape": [b, t],
        "one_hot_shape": [t, b, v],
        "output_shape": [t * b, v],
        "state_shape": [b, h],
    }
    if args.json:
        print_json(info)
        return 0
    print(f"corpus: {c.name} ({c.mode} mode), {c.num_lines:,} lines, {len(c.text):,} chars; training on {len(c):,}")
    if split.val_range:
        (start, end), (_, stop) = split.val_range, split.train_range
        print(
            f"held-out: chars {start:,}..{end - 1:,} of the text ({end - start:,}); training on chars 0..{stop - 1:,}"
        )
    print(f"vocab: {v} tokens: {' '.join(repr(tok) for tok in c.vocab.idx_to_token[:30])}")
    print(f"minibatches per epoch ({args.sampling}): {len(loader)}")
    for label, key in (
        ("X (batch, steps)", "x_shape"),
        ("one-hot (steps, batch, vocab)", "one_hot_shape"),
        ("outputs (steps x batch, vocab)", "output_shape"),
        ("state (batch, hidden)", "state_shape"),
    ):
        print(f"{label}: {tuple(info[key])}")
    return 0


def cmd_reproduce(args) -> int:
    """The book's runs of `--chapter` 8 or 9, recorded in the run store, then the table beside its figures."""
    resolve_device(args.device)
    overrides = {"device": args.device} | ({"num_epochs": args.epochs} if args.epochs else {})
    c = load_corpus(args.corpus, "book", TrainConfig.max_tokens)
    store = RunStore()

    def progress(name, stats):
        if stats.epoch % 50 == 0 and not args.json:
            print(f"{name}: epoch {stats.epoch}  perplexity {stats.perplexity:.3f}", file=sys.stderr, flush=True)

    with stop_on_signals() as caught:

        def record(corpus, config, **kwargs):
            if caught:  # Ctrl-C stopped the run before: the next ones are not started
                raise KeyboardInterrupt
            return train_recorded(store, corpus, config, should_stop=lambda: bool(caught), **kwargs)

        rows = run_experiments(c, record, overrides, experiments=CHAPTERS[int(args.chapter)], on_epoch=progress)
    if args.json:
        print_json([asdict(r) for r in rows])
    else:
        print(format_table(rows))
    return 0


def cmd_baseline(args) -> int:
    """The n-gram yardstick (`charrnn.baseline`), fitted on the training slice of the split `train` uses for the
    same flags; prints its held-out perplexity."""
    c = load_corpus(args.corpus, args.mode, args.max_tokens)
    split = split_heldout(c, args.val_tokens)
    if not split.val:
        raise ValueError("val_tokens is 0: there is no held-out text to score; give val_tokens of at least 2")
    result = baseline(split.train, split.val, args.order, len(c.vocab), args.smoothing)
    start, end = split.val_range
    if args.json:
        print_json({**asdict(result), "val_range": [start, end], "corpus": c.name})
        return 0
    print(
        f"{args.order}-gram ({args.smoothing}) held-out perplexity {result.val_perplexity:.3f} on chars "
        f"{start:,}..{end - 1:,} ({end - start:,}), trained on {result.train_length:,} chars of {c.name}"
    )
    return 0


def add_tune_arguments(argv: list[str]):
    """`tune`'s flags when the command is `tune`, else None: the other commands never import optuna,
    which would cost each of them 0.15 s. None too where optuna is missing."""
    if argv[:1] != ["tune"]:
        return None
    try:
        from charrnn.cli import tune
    except ImportError:
        return None
    return tune.add_arguments


def cmd_tune(args) -> int:
    try:
        from charrnn.cli import tune
    except ImportError as e:
        raise ValueError(f"tune needs optuna ({e.name} is missing): pip install -r requirements.txt") from None
    return tune.run(args)


def os_error(e: OSError) -> str:
    where = e.filename or "a file"
    in_home = str(where).startswith(str(home_dir()))
    fix = "set CHARRNN_HOME to a folder you can write" if in_home else "check the path and its permissions"
    return f"{where}: {e.strerror or e}; {fix}"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(bench.add_arguments, add_tune_arguments(argv)).parse_args(argv)
    args.argv = argv  # which flags were given (a resumed run refuses those that would change it)
    if getattr(args, "database", None):  # every store this process and its training processes open
        os.environ[ENV] = args.database
    if getattr(args, "preset", None):
        apply_preset(args, argv)
    commands = {"info": cmd_info, "train": cmd_train, "generate": cmd_generate, "runs": cmd_runs, "bench": bench.run}
    commands |= {"reproduce": cmd_reproduce, "tune": cmd_tune, "baseline": cmd_baseline}
    try:
        return commands[args.command](args)
    except CheckpointError as e:  # about the file's contents (its num_hiddens), not a flag of this command
        message = " ".join(str(e).splitlines())
    except ValueError as e:  # CorpusError, StoreError and every check of the core
        message = flagged(str(e))
    except sqlite3.Error as e:
        message = f"the run store in {home_dir()} cannot be used ({e}); set CHARRNN_HOME to a folder you can write"
    except SQLAlchemyError as e:  # the database server went away mid-command (what opening it checks is a StoreError)
        where = masked(store_url(home_dir()))
        message = f"the run store at {where} failed ({type(e).__name__}); check the database server and try again"
    except BrokenPipeError:  # `... | head` stopped reading: nothing left to say to anyone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:
        message = os_error(e)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(f"python -m charrnn {args.command}: error: {message}", file=sys.stderr)
    return 2
