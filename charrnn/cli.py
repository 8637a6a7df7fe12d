"""`python -m charrnn`: info, train, generate, bench. Defaults are the book's recipe."""

import argparse
import json
import sys
from dataclasses import asdict

from charrnn import bench
from charrnn.argtypes import non_negative_float, non_negative_int, positive_float, positive_int
from charrnn.batches import SAMPLINGS, SeqDataLoader
from charrnn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from charrnn.data import MODES, CorpusError, load_corpus
from charrnn.generate import generate, predict
from charrnn.recorder import train_recorded
from charrnn.store import RunStore
from charrnn.train import TrainConfig


class ArgumentParser(argparse.ArgumentParser):
    """Bad arguments end with ONE line that names the flag and the problem (exit 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_corpus_args(p, default_max_tokens=10000):
    d = TrainConfig()
    p.add_argument(
        "--corpus",
        default="time_machine",
        help="'time_machine' (downloaded and cached), 'fallback' (a text already on this "
        "machine, for offline use) or the path of a UTF-8 .txt file (default: %(default)s)",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="book",
        help="'book': letters only, lowercase, lines joined (the book); 'raw': every char kept",
    )
    p.add_argument(
        "--max-tokens",
        type=non_negative_int,
        default=default_max_tokens,
        help="use the first N chars, 0 for all (default: %(default)s, the book's recipe)",
    )
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="subsequences per minibatch")
    p.add_argument("--num-steps", type=positive_int, default=d.num_steps, help="time steps per subsequence")
    p.add_argument(
        "--sampling",
        choices=SAMPLINGS,
        default=d.sampling,
        help="sequential partitioning (state carried) or random sampling (state reset)",
    )


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    parser = ArgumentParser(prog="python -m charrnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    p = sub.add_parser("info", help="corpus length, vocab and minibatch shapes")
    add_corpus_args(p)
    p.add_argument("--num-hiddens", type=positive_int, default=d.num_hiddens, help="hidden width for the state shape")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("train", help="train the scratch RNN (the book's recipe by default)")
    add_corpus_args(p)
    p.add_argument("--epochs", type=positive_int, default=d.num_epochs, help="number of epochs (default: %(default)s)")
    p.add_argument("--lr", type=positive_float, default=d.lr, help="SGD learning rate (default: %(default)s)")
    p.add_argument(
        "--num-hiddens", type=positive_int, default=d.num_hiddens, help="hidden width (default: %(default)s)"
    )
    p.add_argument(
        "--clip",
        type=non_negative_float,
        default=d.clip,
        help="gradient clipping theta, 0 to turn it off (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="seeds the init and the iterator (default: %(default)s)")
    p.add_argument("--device", default=d.device, help="auto (CUDA if present), cpu, cuda or cuda:N")
    p.add_argument("--save", metavar="PATH", help="also write the final checkpoint here")
    p.add_argument("--name", help="a name for the run in the run store (default: the date and time)")
    p.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=50,
        help="write a checkpoint to the run store every N epochs, and at the end (default: %(default)s)",
    )
    p.add_argument("--resume", metavar="RUN_ID", help="continue a stopped or interrupted run from its last checkpoint")
    p.add_argument("--json", action="store_true", help="one JSON object per epoch, then a final one")

    p = sub.add_parser("generate", help="continue a prefix with a trained checkpoint")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="PATH", help="a checkpoint file (`train --save` writes one)")
    source.add_argument("--run", metavar="RUN_ID", help="the last checkpoint of a run in the run store")
    p.add_argument("--prefix", default=d.prefix, help="text to warm up on (default: %(default)r)")
    p.add_argument("--num-preds", type=non_negative_int, default=50, help="chars to generate (default: %(default)s)")
    p.add_argument(
        "--temperature",
        type=non_negative_float,
        default=0.0,
        help="0 = the book's greedy decoding; > 0 samples from softmax(logits / T)",
    )
    p.add_argument("--top-k", type=positive_int, default=None, help="sample only among the K likeliest chars")
    p.add_argument("--seed", type=int, default=None, help="makes sampling reproducible")
    p.add_argument("--device", default="cpu", help="cpu, auto, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("runs", help="list the runs in the run store")
    p.add_argument("--json", action="store_true", help="print one JSON list")

    bench.add_arguments(sub.add_parser("bench", help="time the book's loop, charrnn and nn.RNN"))
    return parser


def cmd_info(args) -> int:
    c = load_corpus(args.corpus, args.mode, args.max_tokens)
    loader = SeqDataLoader(c.corpus, args.batch_size, args.num_steps, args.sampling, seed=0)
    b, t, v, h = args.batch_size, args.num_steps, len(c.vocab), args.num_hiddens
    info = {
        "corpus": c.name,
        "mode": c.mode,
        "corpus_length": len(c),
        "text_length": len(c.text),
        "num_lines": c.num_lines,
        "vocab_size": v,
        "idx_to_token": c.vocab.idx_to_token,
        "num_batches": len(loader),
        "x_shape": [b, t],
        "one_hot_shape": [t, b, v],
        "output_shape": [t * b, v],
        "state_shape": [b, h],
    }
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"corpus: {c.name} ({c.mode} mode), {c.num_lines:,} lines, {len(c.text):,} chars; training on {len(c):,}")
    print(f"vocab: {v} tokens: {' '.join(repr(tok) for tok in c.vocab.idx_to_token[:30])}")
    print(f"minibatches per epoch ({args.sampling}): {len(loader)}")
    shapes = [
        ("X (batch, steps)", "x_shape"),
        ("one-hot (steps, batch, vocab)", "one_hot_shape"),
        ("outputs (steps x batch, vocab)", "output_shape"),
        ("state (batch, hidden)", "state_shape"),
    ]
    for label, key in shapes:
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


def cmd_train(args) -> int:
    store = RunStore()
    c = resume_corpus(args, store) if args.resume else load_corpus(args.corpus, args.mode, args.max_tokens)
    config = TrainConfig(
        num_epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        num_steps=args.num_steps,
        num_hiddens=args.num_hiddens,
        max_tokens=args.max_tokens,
        sampling=args.sampling,
        clip=args.clip,
        seed=args.seed,
        device=args.device,
    ).validate()

    def on_epoch(s):
        if args.json:
            print(json.dumps(asdict(s)), flush=True)
        else:
            line = (
                f"epoch {s.epoch:4d}  perplexity {s.perplexity:8.3f}  {s.tokens_per_sec:10.1f} tokens/sec  "
                f"grad norm {s.grad_norm:.3f}  clipped {s.clipped:4.0%}"
            )
            print(line + (f"\n  {s.sample}" if s.sample else ""), flush=True)

    run_id, result = train_recorded(
        store,
        c,
        config,
        on_epoch=on_epoch,
        checkpoint_every=args.checkpoint_every,
        name=args.name,
        resume=args.resume,
    )
    samples = {p: predict(result.model, c.vocab, p, 50) for p in ("time traveller", "traveller")}
    path = None
    if args.save:
        path = str(save_checkpoint(args.save, result.model, c.vocab, result.config, c.fingerprint(), result.history))
    if args.json:
        final = {
            "run_id": run_id,
            "perplexity": result.perplexity,
            "tokens_per_sec": result.tokens_per_sec,
            "device": result.device,
            "samples": samples,
            "checkpoint": path,
        }
        print(json.dumps(final))
    else:
        print(result.summary())
        for text in samples.values():
            print(text)
        print(f"run {run_id} recorded in {store.path}")
        if path:
            print(f"checkpoint written to {path}")
    return 0


def cmd_generate(args) -> int:
    from charrnn.device import resolve_device

    device = resolve_device(args.device)
    path = args.checkpoint
    if args.run:
        store = RunStore()
        last = store.last_checkpoint(store.run(args.run)["id"])
        if last is None:
            raise ValueError(f"run {args.run} has no checkpoint yet")
        path = last["path"]
    model, vocab, _ = load_checkpoint(path, device)
    r = generate(model, vocab, args.prefix, args.num_preds, args.temperature, args.top_k, args.seed, device)
    if r.unknown:
        print(f"warning: prefix chars not in the vocab, fed as <unk>: {''.join(r.unknown)!r}", file=sys.stderr)
    if args.json:
        print(json.dumps({"prefix": r.prefix, "generated": r.generated, "text": r.text, "unknown": r.unknown}))
    else:
        print(r.text)
    return 0


def cmd_runs(args) -> int:
    runs = RunStore().runs()
    if args.json:
        print(json.dumps(runs))
        return 0
    print(f"{'id':10}  {'status':11}  {'epochs':>6}  {'perplexity':>10}  {'tokens/s':>10}  {'device':8}  name")
    for r in runs:
        ppl = f"{r['final_perplexity']:.3f}" if r["final_perplexity"] is not None else "-"
        tps = f"{r['tokens_per_sec']:.0f}" if r["tokens_per_sec"] is not None else "-"
        print(f"{r['id']:10}  {r['status']:11}  {r['epochs']:>6}  {ppl:>10}  {tps:>10}  {r['device']:8}  {r['name']}")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    commands = {"info": cmd_info, "train": cmd_train, "generate": cmd_generate, "runs": cmd_runs}
    try:
        if args.command == "bench":
            return bench.run(args)
        return commands[args.command](args)
    except (CorpusError, CheckpointError, ValueError) as e:
        print(f"python -m charrnn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
