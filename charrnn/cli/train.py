"""`python -m charrnn train`: a run recorded in the run store, or resumed from it; its closing lines."""

import sys
from dataclasses import asdict, fields

from charrnn.cli.console import print_json, stop_on_signals
from charrnn.cli.flags import FLAGS, given
from charrnn.data import load_corpus
from charrnn.device import resolve_device
from charrnn.files import check_save
from charrnn.generate import predict
from charrnn.runs.checkpoint import save_checkpoint
from charrnn.runs.recorder import check_resumable, train_recorded
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig

SAMPLE_PREFIXES = ("time traveller", "traveller")  # the book's closing continuations


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
