"""`python -m charrnn bench`: per cell (rnn, gru, lstm), the book's loop, charrnn's scratch step and torch's
module, timed alike.

For each cell the three contenders (`charrnn.bench_contenders`) run in one process, on one device, over the
same minibatches (sequential partitioning, the state carried and detached between minibatches), after the
same warm-up (`charrnn.bench_timing`): a table per cell. For the tanh RNN the scratch step is also timed
against its matmuls alone (the ceiling), and `--trials K` times K trials one after another against the same
K batched (`charrnn.bench_batched`). This module is the command: its flags, the run and the report.
"""

import argparse
import itertools
import json
import sys

import torch

from charrnn.argtypes import at_most, positive_int
from charrnn.bench_batched import bench_ceiling, bench_trials, check_trials
from charrnn.bench_contenders import CONTENDERS, label
from charrnn.bench_timing import bench_shape, peak_rss_mb
from charrnn.data import CorpusError, load_corpus
from charrnn.device import describe, resolve_device
from charrnn.models import CELLS
from charrnn.train import MAX_HIDDENS

SWEEP_BATCHES = (32, 128, 512)
SWEEP_HIDDENS = (256, 512, 1024)
MAX_TRIALS = 256
BOOK_HIDDENS = {"rnn": 512, "gru": 256, "lstm": 256}  # chapter 8's recipe (8.5); chapter 9's runs (9.1, 9.2)


_hiddens = at_most(positive_int, MAX_HIDDENS)
_trials = at_most(positive_int, MAX_TRIALS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where to time: auto (CUDA if present), cpu or cuda (default: %(default)s)",
    )
    parser.add_argument(
        "--cell",
        choices=(*CELLS, "all"),
        default="all",
        help="which cell's table: rnn (8.5), gru (9.1), lstm (9.2) or all three, one after another "
        "(default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=32, help="subsequences per minibatch (default: 32)")
    parser.add_argument("--num-steps", type=positive_int, default=35, help="time steps per subsequence (default: 35)")
    parser.add_argument(
        "--num-hiddens",
        type=_hiddens,
        default=None,
        help="hidden width of every cell timed (default: the book's, 512 for rnn, 256 for gru and lstm)",
    )
    parser.add_argument(
        "--minibatches",
        type=positive_int,
        default=50,
        help="timed minibatches per contender, after 5 untimed warm-up ones, in 5 interleaved rounds; "
        "tokens/s is the best round (default: 50)",
    )
    parser.add_argument(
        "--eager",
        action="store_true",
        help="on CUDA, run charrnn's Trainer (scratch and nn) without capturing its step as a CUDA graph "
        "(the CPU never captures one)",
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="rnn only: also time batch 32/128/512 x hidden 256/512/1024 (few minibatches each on CPU)",
    )
    parser.add_argument(
        "--trials",
        type=_trials,
        default=None,
        metavar="K",
        help="rnn only: also time K trials of this shape (lr 0.5..2, seeds 0..K-1) one after another against "
        "the same K trained as one batched step",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")


def load_text():
    """The Time Machine if it is on this machine (never downloads), else the offline fallback text."""
    try:
        return load_corpus("time_machine", max_tokens=None, download=False), None
    except CorpusError as e:
        return load_corpus("fallback", max_tokens=None), str(e)


def cells_of(args) -> list[str]:
    """The cells to time; refuses (naming the flag) the rnn-only figures for a gated cell alone."""
    cells = list(CELLS) if args.cell == "all" else [args.cell]
    for flag, asked in (("--trials", args.trials), ("--sweep", args.sweep)):
        if asked and "rnn" not in cells:
            raise ValueError(f"{flag} times the rnn only, not the {args.cell}; use --cell rnn or --cell all")
    return cells


def run(args) -> int:
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        print(f"python -m charrnn bench: error: --device: {e}", file=sys.stderr)
        return 2
    cells = cells_of(args)
    hiddens = {cell: args.num_hiddens or BOOK_HIDDENS[cell] for cell in cells}
    text, missing = load_text()
    if missing:
        print(f"note: timing on the offline fallback text {text.name!r}: {missing}", file=sys.stderr)
    V, warmup, graph = len(text.vocab), 5, not args.eager
    if args.trials:
        check_trials(V, args.batch_size, args.num_steps, hiddens["rnn"], args.trials, device)
    report = {
        "device": describe(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "text": text.name,
        "fallback_text": bool(missing),
        "vocab_size": V,
        "warmup_minibatches": warmup,
        "minibatches": args.minibatches,
        "cuda_graph": device.type == "cuda" and graph,
        "memory": "CUDA max_memory_allocated above what was allocated, while each contender was built and warmed up"
        if device.type == "cuda"
        else "peak RSS of the process after each contender's warm-up (the first cell's scratch first)",
        "cells": {},
    }
    for cell in cells:
        shape = (text.corpus, V, cell, args.batch_size, args.num_steps, hiddens[cell])
        report["cells"][cell] = bench_shape(*shape, warmup, args.minibatches, device, cuda_graph=graph)
    if "rnn" in cells:  # the ceiling, the trials and the sweep are the tanh RNN's
        shape = (text.corpus, V, args.batch_size, args.num_steps, hiddens["rnn"])
        report.update(bench_ceiling(*shape, warmup, args.minibatches, device))
        if args.trials:
            report.update(bench_trials(*shape, args.trials, warmup, args.minibatches, device))
    if args.sweep:
        # Each CPU cell costs seconds per minibatch at batch 512 x hidden 1024: keep it short there.
        sweep_warmup, sweep_timed = (5, args.minibatches) if device.type == "cuda" else (1, 3)
        report["sweep"] = [
            bench_shape(text.corpus, V, "rnn", b, args.num_steps, h, sweep_warmup, sweep_timed, device, graph)
            for b, h in itertools.product(SWEEP_BATCHES, SWEEP_HIDDENS)
        ]
    report["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def format_cell(c: dict, unit: str) -> list[str]:
    """One cell's table: a row per contender, then the scratch step's ratios."""
    s, nn_name = c["tokens_per_sec"], label("nn", c["cell"])
    lines = [
        f"{c['cell']}: batch {c['batch_size']} x steps {c['num_steps']} x hidden {c['num_hiddens']}",
        f"  {'contender':<10} {'tokens/s':>12} {'(all rounds)':>13} {unit:>16}",
    ]
    for name in CONTENDERS:
        lines.append(
            f"  {label(name, c['cell']):<10} {s[name]:>12,.0f} {c['tokens_per_sec_overall'][name]:>13,.0f} "
            f"{c['peak_memory_mb'][name]:>13,.0f} MB"
        )
    lines.append(
        f"  scratch / book: {c['ratio_scratch_book']:.2f}x   scratch / {nn_name}: {c['ratio_scratch_nn']:.2f}x"
    )
    return lines


def format_report(r: dict) -> str:
    unit = "max allocated" if r["device_type"] == "cuda" else "peak RSS so far"
    graph = "" if r["device_type"] != "cuda" else ("  CUDA graph" if r["cuda_graph"] else "  eager (no CUDA graph)")
    lines = [
        f"device: {r['device']}  torch {r['torch']}  text: {r['text']}{graph}"
        + ("  (offline fallback: The Time Machine is not on this machine)" if r["fallback_text"] else ""),
        f"{r['minibatches']} timed minibatches per contender after {r['warmup_minibatches']} warm-up, "
        "in interleaved rounds; tokens/s is the best round",
    ]
    for cell, c in r["cells"].items():
        lines += format_cell(c, unit)
        if cell == "rnn":
            ceiling = r["tokens_per_sec_ceiling"]
            lines.append(
                f"  scratch at {r['ceiling_share']:.0%} of the matmul-only ceiling ({ceiling['scratch']:,.0f} "
                f"against {ceiling['matmul_only']:,.0f} tokens/s: the step's matmuls alone, same shapes)"
            )
    lines.append(f"process peak RSS: {r['peak_rss_mb']:,.0f} MB")
    if "trials" in r:
        t = r["tokens_per_sec_trials"]
        lines.append(
            f"rnn, {r['trials']} trials: one after another {t['sequential']:,.0f} tokens/s, batched "
            f"{t['batched']:,.0f} tokens/s, batched / sequential: {r['ratio_batched_sequential']:.2f}x"
        )
    if "sweep" in r:
        lines.append("rnn sweep (tokens/s):")
        lines.append(
            f"{'batch':>6} {'hidden':>7} {'book':>12} {'scratch':>12} {'nn.RNN':>12} {'/book':>7} {'/nn.RNN':>8}"
        )
        for c in r["sweep"]:
            t = c["tokens_per_sec"]
            lines.append(
                f"{c['batch_size']:>6} {c['num_hiddens']:>7} {t['book']:>12,.0f} {t['scratch']:>12,.0f} "
                f"{t['nn']:>12,.0f} {c['ratio_scratch_book']:>6.2f}x {c['ratio_scratch_nn']:>7.2f}x"
            )
    return "\n".join(lines)
