"""`python -m charrnn runs` and `generate`: the run store's runs listed, stopped, deleted or copied, and a
continuation from a stored run or a checkpoint file."""

import sys

from charrnn.cli.console import print_json, printable
from charrnn.device import resolve_device
from charrnn.generate import generate
from charrnn.runs.checkpoint import CheckpointError, load_checkpoint
from charrnn.runs.copy import copy_runs, other_store
from charrnn.runs.recorder import load_run_checkpoint, load_stored
from charrnn.runs.store import DamagedCheckpoint, RunStore


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


def report_lines(report: dict, target: RunStore) -> list[str]:
    """What `runs copy` prints: a line per run, then the totals (the target as its messages name it: no password)."""
    lines = [
        f"copied run {r['id']} ({printable(r['name'])}): {_count(r['epochs'], 'epoch')}, "
        f"{_count(r['checkpoints'], 'checkpoint')}"
        for r in report["copied"]
    ]
    lines += [f"run {r['id']} ({printable(r['name'])}) already there" for r in report["there"]]
    lines += [f"skipped run {r['id']} ({printable(r['name'])}): {r['why']}" for r in report["skipped"]]
    epochs, checkpoints = (sum(r[k] for r in report["copied"]) for k in ("epochs", "checkpoints"))
    runs = _count(len(report["copied"]), "run")
    total = f"copied {runs} ({_count(epochs, 'epoch')}, {_count(checkpoints, 'checkpoint')}) to {target.where}"
    total += f"; {len(report['there'])} already there" if report["there"] else ""
    total += f"; {len(report['skipped'])} skipped" if report["skipped"] else ""
    return [*lines, total]


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" + ("" if n == 1 else "s")
