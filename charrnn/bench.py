"""`python -m charrnn bench`: the book's loop, charrnn's training step and `torch.nn.RNN`, timed alike.

All three contenders (`charrnn.bench_contenders`) run in one process, on one device, over the same
minibatches (sequential partitioning, the state carried and detached between minibatches), after the
same warm-up (`charrnn.bench_timing`). charrnn's step is also timed against its matmuls alone (the
ceiling), and `--trials K` times K trials one after another against the same K batched
(`charrnn.bench_batched`). This module is the command: its flags, the run and the report.
"""

import argparse
import itertools
import json
import sys

import torch

from charrnn.argtypes import at_most, positive_int
from charrnn.bench_batched import bench_ceiling, bench_trials, check_trials
from charrnn.bench_contenders import CONTENDERS
from charrnn.bench_timing import bench_shape, peak_rss_mb
from charrnn.data import CorpusError, load_corpus
from charrnn.device import describe, resolve_device
from charrnn.train import MAX_HIDDENS

SWEEP_BATCHES = (32, 128, 512)
SWEEP_HIDDENS = (256, 512, 1024)
MAX_TRIALS = 256


_hiddens = at_most(positive_int, MAX_HIDDENS)
_trials = at_most(positive_int, MAX_TRIALS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where to time: auto (CUDA if present), cpu or cuda (default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=32, help="subsequences per minibatch (default: 32)")
    parser.add_argument("--num-steps", type=positive_int, default=35, help="time steps per subsequence (default: 35)")
    parser.add_argument("--num-hiddens", type=_hiddens, default=512, help="hidden width (default: 512)")
    parser.add_argument(
        "--minibatches",
        type=positive_int,
        default=50,
        help="timed minibatches per contender, after 5 untimed warm-up ones, in 5 interleaved rounds; "
        "tokens/s is the best round (default: 50)",
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="also time batch 32/128/512 x hidden 256/512/1024 (few minibatches each on CPU)",
    )
    parser.add_argument(
        "--trials",
        type=_trials,
        default=None,
        metavar="K",
        help="also time K trials of this shape (lr 0.5..2, seeds 0..K-1) one after another against the same K "
        "trained as one batched step",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def load_text():
    """The Time Machine if it is on this machine (never downloads), else the offline fallback text."""
    try:
        return load_corpus("time_machine", max_tokens=None, download=False), None
    except CorpusError as e:
        return load_corpus("fallback", max_tokens=None), str(e)


def run(args) -> int:
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        print(f"python -m charrnn bench: error: --device: {e}", file=sys.stderr)
        return 2
    text, missing = load_text()
    if missing:
        print(f"note: timing on the offline fallback text {text.name!r}: {missing}", file=sys.stderr)
    V, warmup = len(text.vocab), 5
    if args.trials:
        check_trials(V, args.batch_size, args.num_steps, args.num_hiddens, args.trials, device)
    report = {
        "device": describe(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "text": text.name,
        "fallback_text": bool(missing),
        "vocab_size": V,
        "warmup_minibatches": warmup,
        "minibatches": args.minibatches,
        "memory": "CUDA max_memory_allocated while each contender was built and warmed up"
        if device.type == "cuda"
        else "peak RSS of the process after each contender's warm-up (charrnn first)",
    }
    report.update(
        bench_shape(text.corpus, V, args.batch_size, args.num_steps, args.num_hiddens, warmup, args.minibatches, device)
    )
    shape = (text.corpus, V, args.batch_size, args.num_steps, args.num_hiddens)
    report.update(bench_ceiling(*shape, warmup, args.minibatches, device))
    if args.trials:
        report.update(bench_trials(*shape, args.trials, warmup, args.minibatches, device))
    if args.sweep:
        # Each CPU cell costs seconds per minibatch at batch 512 x hidden 1024: keep it short there.
        sweep_warmup, sweep_timed = (5, args.minibatches) if device.type == "cuda" else (1, 3)
        report["sweep"] = [
            bench_shape(text.corpus, V, b, args.num_steps, h, sweep_warmup, sweep_timed, device)
            for b, h in itertools.product(SWEEP_BATCHES, SWEEP_HIDDENS)
        ]
    report["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def format_report(r: dict) -> str:
    s = r["tokens_per_sec"]
    unit = "max allocated" if r["device_type"] == "cuda" else "peak RSS so far"
    lines = [
        f"device: {r['device']}  torch {r['torch']}  text: {r['text']}"
        + ("  (offline fallback: The Time Machine is not on this machine)" if r["fallback_text"] else ""),
        f"batch {r['batch_size']} x steps {r['num_steps']} x hidden {r['num_hiddens']}, "
        f"{r['minibatches']} timed minibatches after {r['warmup_minibatches']} warm-up, in interleaved rounds",
        f"{'contender':<10} {'tokens/s':>12} {'(all rounds)':>13} {unit:>16}",
    ]
    for name in CONTENDERS:
        lines.append(
            f"{name:<10} {s[name]:>12,.0f} {r['tokens_per_sec_overall'][name]:>13,.0f} "
            f"{r['peak_memory_mb'][name]:>13,.0f} MB"
        )
    lines.append(
        f"charrnn / book: {r['ratio_charrnn_book']:.2f}x   charrnn / nn.RNN: {r['ratio_charrnn_nn_rnn']:.2f}x"
        f"   process peak RSS: {r['peak_rss_mb']:,.0f} MB"
    )
    c = r["tokens_per_sec_ceiling"]
    lines.append(
        f"charrnn at {r['ceiling_share']:.0%} of the matmul-only ceiling ({c['charrnn']:,.0f} against "
        f"{c['matmul_only']:,.0f} tokens/s: the step's matmuls alone, same shapes)"
    )
    if "trials" in r:
        t = r["tokens_per_sec_trials"]
        lines.append(
            f"{r['trials']} trials: one after another {t['sequential']:,.0f} tokens/s, batched {t['batched']:,.0f} "
            f"tokens/s, batched / sequential: {r['ratio_batched_sequential']:.2f}x"
        )
    if "sweep" in r:
        lines.append("sweep (tokens/s):")
        lines.append(
            f"{'batch':>6} {'hidden':>7} {'book':>12} {'charrnn':>12} {'nn.RNN':>12} {'/book':>7} {'/nn.RNN':>8}"
        )
        for c in r["sweep"]:
            t = c["tokens_per_sec"]
            lines.append(
                f"{c['batch_size']:>6} {c['num_hiddens']:>7} {t['book']:>12,.0f} {t['charrnn']:>12,.0f} "
                f"{t['nn_rnn']:>12,.0f} {c['ratio_charrnn_book']:>6.2f}x {c['ratio_charrnn_nn_rnn']:>7.2f}x"
            )
    return "\n".join(lines)
