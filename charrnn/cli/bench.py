"""`python -m charrnn bench`: per cell (rnn, gru, lstm), the book's loop, charrnn's scratch step and torch's
module, timed alike.

For each cell the three contenders (`charrnn.bench.contenders`) run in one process, on one device, over the
same minibatches (sequential partitioning, the state carried and detached between minibatches), after the
same warm-up (`charrnn.bench.timing`): a table per cell. For the tanh RNN the scratch step is also timed
against its matmuls alone (the ceiling), and `--trials K` times K trials one after another against the same
K batched (`charrnn.bench.batched`). This module is the command: its flags; `charrnn.bench.report` measures
and lays out the figures.
"""

import argparse
import json
import sys

from charrnn.bench.report import BOOK_HIDDENS, format_report, load_text, measure
from charrnn.cli.argtypes import at_most, positive_int
from charrnn.device import resolve_device
from charrnn.models import CELLS
from charrnn.train import MAX_HIDDENS

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
    shape = (args.batch_size, args.num_steps, args.minibatches)
    report = measure(text, missing, device, cells, hiddens, *shape, args.eager, args.trials, args.sweep)
    print(json.dumps(report) if args.json else format_report(report))
    return 0
