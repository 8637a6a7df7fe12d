"""`python -m charrnn`: info, train, generate, runs, bench, reproduce, tune. Defaults are the book's recipe.

Every argument is checked before any text or checkpoint is read, and every error a user can cause is
one line naming the flag (exit status 2). Ctrl-C or SIGTERM stops `train` as the app's Stop button does.
"""

import os
import sqlite3
import sys
from dataclasses import asdict, fields

from sqlalchemy.exc import SQLAlchemyError

from charrnn import baseline_command, bench
from charrnn.batches import SeqDataLoader
from charrnn.console import print_json, printable, stop_on_signals
from charrnn.data import load_corpus, split_heldout
from charrnn.device import resolve_device
from charrnn.files import check_save
from charrnn.generate import generate, predict
from charrnn.parser import FLAGS, apply_preset, build_parser, flagged, given
from charrnn.reproduce import CHAPTERS, format_table, run_experiments
from charrnn.runs.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from charrnn.runs.copy import copy_runs, other_store, report_lines
from charrnn.runs.database import ENV, masked, store_url
from charrnn.runs.recorder import check_resumable, load_run_checkpoint, load_stored, train_recorded
from charrnn.runs.store import DamagedCheckpoint, RunStore, home_dir
from charrnn.train import TrainConfig

SAMPLE_PREFIXES = ("time traveller", "traveller")  # the book's closing continuations


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


def resume_corpus(args, store: RunStore):
    """The text a resumed run trained on: reloaded by source, and checked by its SHA-1."""
    fp = store.run(args.resume)["corpus"]
    source = fp["source"] if fp["source"] in ("time_machine", "fallback") else args.corpus
    if source == "time_machine" and fp["source"] != "time_machine":
        raise ValueError(f"run {args.resume} trained on {fp['name']}: pass that file with --corpus PATH")
    c = load_corpus(source, fp["mode"], fp["max_tokens"] or 0)
    if c.sha1 != fp["sha1"]:
        raise ValueError(f"--corpus: {c.name} is not the text run {args.resume} trained on ({fp['name']})")
    return c


def print_epoch(as_json: bool, s) -> None:
    if as_json:
        print_json(asdict(s))
        return
    # a diverging run's perplexity can have hundreds of digits before it becomes inf
    ppl = f"{s.perplexity:8.3f}" if s.perplexity < 1e5 else f"{s.perplexity:8.2e}"
    line = (
        f"epoch {s.epoch:4d}  perplexity {ppl}  {s.tokens_per_sec:10.1f} tokens/sec  "
        f"grad norm {s.grad_norm:.3f}  clipped {s.clipped:4.0%}"
    )
    held = [v for _, v in getattr(s, "val_points", ())]  # inside the epoch (a cadence of 1/k epoch), then its end
    held += [s.val_perplexity] if getattr(s, "val_perplexity", None) is not None else []
    held = f"  held-out {', '.join(f'{v:.3f}' for v in held)}" if held else ""
    print(line + held + (f"\n  {s.sample}" if s.sample else ""), flush=True)


def check_kept_settings(args, stored: dict, settings: set[str]) -> None:
    """A resumed run trains on with its own settings (the device aside): refuse a flag or preset that asks
    for another value, rather than drop it silently (a run must not change its model under its name)."""
    kept = {k: stored.get(k, getattr(TrainConfig(), k)) for k in settings}  # an old run's missing ones: defaults
    changed = [
        f"{FLAGS.get(k, '--' + k.replace('_', '-'))} {getattr(args, k)} (the run's: {kept[k]})"
        for k in sorted(settings)
        if given(k, args.argv, args.preset) and getattr(args, k) != kept[k]
    ]
    if changed:
        raise ValueError(
            f"--resume {args.resume}: a resumed run keeps its own settings, and {', '.join(changed[:3])} would "
            "change them; leave those out, or train a new run with them (Runs page: Train again)"
        )


def cmd_train(args) -> int:
    settings = {f.name for f in fields(TrainConfig)} - {"num_epochs", "prefix", "predict_every"}  # each is a flag
    config = TrainConfig(num_epochs=args.epochs or TrainConfig.num_epochs, **{k: getattr(args, k) for k in settings})
    config.validate()
    resolve_device(args.device)  # refused here, before any text is read or downloaded
    store = RunStore()
    check_save(args.save, args.overwrite, store)
    if args.resume:
        try:
            run, _ = check_resumable(store, args.resume, args.epochs)
        except ValueError as e:
            raise ValueError(f"--resume {args.resume}: {e}") from None
        check_kept_settings(args, run["config"], settings - {"device"})
        c = resume_corpus(args, store)
    else:
        c = load_corpus(args.corpus, args.mode, args.max_tokens)
    with stop_on_signals() as caught:
        run_id, result = train_recorded(
            store,
            c,
            config,
            on_epoch=lambda s: print_epoch(args.json, s),
            should_stop=lambda: bool(caught),
            checkpoint_every=args.checkpoint_every,
            name=args.name,
            resume=args.resume,
            num_epochs=args.epochs,
            on_note=lambda note: print(f"warning: {note}", file=sys.stderr),
        )
    report_train(args, store, c, run_id, result)
    if not result.stopped:
        return 0
    last = store.last_checkpoint(run_id)
    resume = f"stopped at epoch {last['epoch']}; resume with `python -m charrnn train --resume {run_id}`"
    print(resume if last else "stopped before the first epoch finished; nothing to resume", file=sys.stderr)
    # The shell's convention: 130 for SIGINT, 143 for SIGTERM; a stop asked through the run store (`runs stop`, Stop
    # on another machine) is a run that ended as asked: 0.
    return 128 + caught["signal"] if caught else 0


def report_train(args, store: RunStore, c, run_id: str, result) -> None:
    """The book's closing lines (or one JSON object); a stopped or diverged model is not sampled or saved."""
    (run,) = store.runs(run_id=run_id)  # with its held-out figures
    finished = run["status"] == "finished"
    samples = {p: predict(result.model, c.vocab, p, 50) for p in SAMPLE_PREFIXES} if finished else {}
    path = None
    if args.save and finished:
        history = store.history(run_id)
        path = str(save_checkpoint(args.save, result.model, c.vocab, result.config, c.fingerprint(), history))
    elif args.save:
        kept = f"`python -m charrnn generate --run {run_id}` uses its last good checkpoint"
        print(f"--save: nothing written, the run {run['status']}; {kept}", file=sys.stderr)
    if args.json:
        final = {"run_id": run_id, "status": run["status"], "reason": run["reason"], "perplexity": result.perplexity}
        final.update(tokens_per_sec=result.tokens_per_sec, device=result.device, samples=samples, checkpoint=path)
        final.update(
            val_perplexity=run["final_val_perplexity"],
            best_val_perplexity=run["best_val_perplexity"],
            best_val_epoch=run["best_val_epoch"],
        )
        print_json(final)
        return
    print(result.summary())
    for text in samples.values():
        print(text)
    if run["best_val_perplexity"] is not None:
        print(
            f"held-out perplexity {run['final_val_perplexity']:.3f} (best {run['best_val_perplexity']:.3f} "
            f"at epoch {run['best_val_epoch']})"
        )
    print(f"run {run_id} recorded in {store.where}" + (f" ({run['status']}: {run['reason']})" if run["reason"] else ""))
    if path:
        print(f"checkpoint written to {path}")


def run_checkpoint(store: RunStore, run_id: str, epoch, device):
    """(model, vocab, what was used) of a stored run at `epoch`: 'best' (its best held-out checkpoint, else
    its last), 'last' (the newest that loads), or an epoch number."""
    skipped = ""
    if epoch == "best":
        best = store.best_checkpoint(run_id)
        try:
            if best is not None:
                model, vocab, _ = load_stored(store, run_id, best["epoch"], device)
                held = best["val_perplexity"]
                return model, vocab, f"epoch {best['epoch']}: the best held-out checkpoint ({held:.3f})"
        except (CheckpointError, DamagedCheckpoint):
            skipped = f"warning: the best held-out checkpoint (epoch {best['epoch']}) is unreadable; "
    if epoch in ("best", "last"):
        model, vocab, ckpt, note = load_run_checkpoint(store, run_id, device)
        if note:
            return model, vocab, f"warning: {note}"
        return model, vocab, skipped + f"epoch {ckpt['epoch']}: the last checkpoint"
    if epoch not in {c["epoch"] for c in store.checkpoints(run_id)}:
        kept = ", ".join(str(c["epoch"]) for c in store.checkpoints(run_id)) or "none"
        raise ValueError(f"no checkpoint of epoch {epoch} (kept: {kept}); give --epoch best, last or one of those")
    model, vocab, _ = load_stored(store, run_id, epoch, device)
    return model, vocab, f"epoch {epoch}"


def cmd_generate(args) -> int:
    device = resolve_device(args.device)  # refused before the checkpoint is read
    if args.run:
        try:
            model, vocab, note = run_checkpoint(RunStore(), args.run, args.epoch or "best", device)
        except ValueError as e:
            raise ValueError(f"--run {args.run}: {e}") from None
        if note:
            print(note, file=sys.stderr)
    elif args.epoch is not None:
        raise ValueError("--epoch picks one of a --run's checkpoints; a --checkpoint file holds one model")
    else:
        model, vocab, _ = load_checkpoint(args.checkpoint, device)
    r = generate(model, vocab, args.prefix, args.num_preds, args.temperature, args.top_k, args.seed, device)
    if r.unknown:
        print(f"warning: prefix chars not in the vocab, fed as <unk>: {''.join(r.unknown)!r}", file=sys.stderr)
    if args.json:
        print_json({"prefix": r.prefix, "generated": r.generated, "text": r.text, "unknown": r.unknown})
    else:
        print(r.text)
    return 0


def cmd_runs(args) -> int:
    store = RunStore()
    if args.action == "delete":
        run = store.run(args.run_id)
        store.delete(args.run_id)  # refuses a running run, naming `runs mark-interrupted`
        print(f"deleted run {args.run_id} ({printable(run['name'])})")
        return 0
    if args.action == "stop":
        run = store.ask_stop(args.run_id)
        print(
            f"asked run {args.run_id} to stop: its process ({run['pid']} on {run['host']}) stops it within a few "
            f"seconds, resumably (`python -m charrnn train --resume {args.run_id}`)"
        )
        return 0
    if args.action == "copy":  # `store` is here; the other is --to's or --from's
        flag, url = ("--to", args.to_url) if args.to_url else ("--from", args.from_url)
        other = other_store(url, flag)
        source, target = (store, other) if flag == "--to" else (other, store)
        print("\n".join(report_lines(copy_runs(source, target, args.run_ids or None), target)))
        return 0
    if args.action == "mark-interrupted":
        store.mark_stuck(args.run_id)
        print(f"run {args.run_id} marked interrupted; `python -m charrnn train --resume {args.run_id}` continues it")
        return 0
    runs = store.runs()
    if args.json:
        print_json(runs)
        return 0
    print(f"{'id':10}  {'status':11}  {'epochs':>6}  {'perplexity':>10}  {'tokens/s':>10}  {'device':8}  name")
    for r in runs:
        ppl = f"{r['final_perplexity']:.3f}" if r["final_perplexity"] is not None else "-"
        tps = f"{r['tokens_per_sec']:.0f}" if r["tokens_per_sec"] is not None else "-"
        name = printable(r["name"])
        print(f"{r['id']:10}  {r['status']:11}  {r['epochs']:>6}  {ppl:>10}  {tps:>10}  {r['device']:8}  {name}")
    for r in runs:
        if r["status"] == "running":
            print(
                f"run {r['id']} shows as running: `python -m charrnn runs stop {r['id']}` stops it from any machine; "
                f"if its process is gone, `python -m charrnn runs mark-interrupted {r['id']}` (then resume or delete)"
            )
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


def add_tune_arguments(argv: list[str]):
    """`tune`'s flags when the command is `tune`, else None: the other commands need only torch, and
    importing optuna and SQLAlchemy would cost each of them 0.15 s. None too where optuna is missing."""
    if argv[:1] != ["tune"]:
        return None
    try:
        from charrnn import tune
    except ImportError:
        return None
    return tune.add_arguments


def cmd_tune(args) -> int:
    try:
        from charrnn import tune
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
    commands |= {"reproduce": cmd_reproduce, "tune": cmd_tune, "baseline": baseline_command.run}
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
