"""The book's runs with its settings, and a table against its figures: chapter 8's three (D2L 8.5
and 8.6) and chapter 9's five (9.1-9.3); and the named recipes (`PRESETS`) that fill a run's settings.

Every run trains 500 epochs on the first 10,000 chars with batch 32, 35 steps, clip 1 and the state
carried (the recipe, `TrainConfig`'s defaults); they differ as the book's runs do. Each row adds what
the book never showed: the held-out perplexity on the 2,000 chars that follow the training text.
Chapter 9's rows also say whether our training perplexity is within `TOLERANCE` of the book's.
"""

import math
import time
from dataclasses import dataclass, field

from charrnn.data import Corpus, split_heldout
from charrnn.generate import predict
from charrnn.train import TrainConfig, TrainResult, train

PREFIX = "time traveller"


@dataclass(frozen=True)
class Experiment:
    name: str
    overrides: dict = field(default_factory=dict)  # TrainConfig fields that differ from the recipe
    book_perplexity: float = math.nan  # the published figure (BOOK.md)
    book_continuation: str = ""  # the book's greedy continuation of PREFIX ("" where BOOK.md has none)
    tolerance: float | None = None  # accepted when |ours - book's| <= this (None: no acceptance set)


# Chapter 8's runs (the name predates chapter 9).
EXPERIMENTS = (
    Experiment(
        "scratch, state carried",
        {},
        1.0,
        "time traveller for so it will be convenient to speak of himwas e",
    ),
    Experiment(
        # The book's second run passes use_random_iter=True to the sequential iterator: it only
        # resets the state before every minibatch.
        "scratch, state reset",
        {"state": "reset"},
        1.5,
        "time traveller held in his hand was a glitteringmetallic framewo",
    ),
    Experiment(
        "concise nn.RNN, 256 hidden",
        {"model": "concise", "num_hiddens": 256},
        1.3,
        "time travellerit would be remarkably convenient for the historia",
    ),
)

TOLERANCE = 0.3  # chapter 9's acceptance: each run's training perplexity within 0.3 of the book's

# Chapter 9's runs: 256 hidden, lr 1, the chapter 8 loop; the deep LSTM is 9.3's two concise layers at lr 2.
# nn.GRU applies the reset gate after W_hh (r * (W_hn h + b_hn)): the concise GRU is another function
# than the scratch one, which follows the book. nn.LSTM is the scratch LSTM's function.
CHAPTER_9 = tuple(
    Experiment(name, {"num_hiddens": 256, **overrides}, book, tolerance=TOLERANCE)
    for name, overrides, book in (
        ("scratch GRU", {"cell": "gru"}, 1.1),
        ("concise nn.GRU", {"cell": "gru", "model": "concise"}, 1.1),
        ("scratch LSTM", {"cell": "lstm"}, 1.3),
        ("concise nn.LSTM", {"cell": "lstm", "model": "concise"}, 1.2),
        ("deep nn.LSTM, 2 layers", {"cell": "lstm", "model": "concise", "num_layers": 2, "lr": 2.0}, 1.0),
    )
)

CHAPTERS = {8: EXPERIMENTS, 9: CHAPTER_9}


@dataclass
class Row:
    """One experiment's outcome beside the book's figures."""

    name: str
    book_perplexity: float
    perplexity: float  # training perplexity of the last epoch, as the book reports it
    val_perplexity: float | None  # held-out perplexity at the last evaluated epoch
    best_val_perplexity: float | None  # lowest held-out perplexity over the run
    tokens_per_sec: float  # of the last epoch, as the book reports it
    device: str
    seconds: float  # wall time of the whole run, evaluations included
    continuation: str  # greedy continuation of PREFIX, 50 chars
    book_continuation: str
    run_id: str | None = None  # the run store's id when the runs were recorded
    tolerance: float | None = None  # the experiment's acceptance, if it has one
    within_book: bool | None = None  # |perplexity - book_perplexity| <= tolerance (None: no tolerance)


def train_heldout(corpus: Corpus, config: TrainConfig, name: str | None = None, on_epoch=None):
    """Train on `corpus` with its held-out slice, unrecorded; returns (None, result) as
    `charrnn.runs.recorder.train_recorded` returns (run id, result)."""
    split = split_heldout(corpus, config.val_tokens)
    return None, train(split.train, corpus.vocab, config, on_epoch=on_epoch, val=split.val)


def run_experiments(corpus: Corpus, train_fn=train_heldout, overrides=None, experiments=EXPERIMENTS, on_epoch=None):
    """Run `experiments` one after another on `corpus` (the recipe's: first 10,000 chars).

    `train_fn(corpus, config, name=..., on_epoch=...)` returns (run id or None, TrainResult): the
    default trains unrecorded; the CLI passes `functools.partial(train_recorded, store)`.
    `overrides` (TrainConfig fields) apply to every run, e.g. the device or a short test.
    `on_epoch(name, stats)` follows the runs' progress. Returns one `Row` per experiment.
    """
    rows = []
    for exp in experiments:
        config = TrainConfig(**{**exp.overrides, **(overrides or {})}).validate()

        def report(stats, name=exp.name):
            if on_epoch is not None:
                on_epoch(name, stats)

        begin = time.perf_counter()
        run_id, result = train_fn(corpus, config, name=exp.name, on_epoch=report)
        seconds = time.perf_counter() - begin
        continuation = predict(result.model, corpus.vocab, PREFIX, 50) if result.history else ""
        rows.append(make_row(exp, result, seconds, continuation, run_id))
    return rows


def make_row(exp: Experiment, result: TrainResult, seconds: float, continuation: str, run_id=None) -> Row:
    vals = [s.val_perplexity for s in result.history if s.val_perplexity is not None]
    return Row(
        name=exp.name,
        book_perplexity=exp.book_perplexity,
        perplexity=result.perplexity,
        val_perplexity=vals[-1] if vals else None,
        best_val_perplexity=min(vals) if vals else None,
        tokens_per_sec=result.tokens_per_sec,
        device=result.device,
        seconds=seconds,
        continuation=continuation,
        book_continuation=exp.book_continuation,
        run_id=run_id,
        tolerance=exp.tolerance,
        within_book=within(result.perplexity, exp.book_perplexity, exp.tolerance),
    )


def within(perplexity: float, book: float, tolerance: float | None) -> bool | None:
    """Whether `perplexity` is within `tolerance` of the book's (a diverged run never is); None without one."""
    if tolerance is None:
        return None
    return math.isfinite(perplexity) and abs(perplexity - book) <= tolerance + 1e-9  # in floats 1.3 - 1.0 > 0.3


COLUMNS = ("run", "book ppl", "train ppl", "held-out ppl", "best held-out", "tokens/s", "device", "seconds")
LEFT = {"run", "device", "within"}  # text columns; the figures are right-aligned


def format_table(rows: list[Row]) -> str:
    """A plain-text table: one line of figures per run, then our continuation and the book's.

    Rows with a tolerance (chapter 9's) get a column saying whether our training perplexity is
    within it of the book's, and the table closes with how many are."""
    tolerances = sorted({r.tolerance for r in rows if r.tolerance is not None})
    columns = list(COLUMNS)
    if tolerances:
        columns.insert(3, "within")  # beside the two figures it compares
    bound = " or ".join(f"{t:g}" for t in tolerances)
    header = [f"within {bound}" if c == "within" else c for c in columns]
    cells = [header] + [_cells(r, bool(tolerances)) for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]

    def fmt(line):
        padded = (c.ljust(w) if name in LEFT else c.rjust(w) for c, w, name in zip(line, widths, columns, strict=True))
        return "  ".join(padded).rstrip()

    out = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    for r, line in zip(rows, cells[1:], strict=True):
        out += [fmt(line), f"    ours: {r.continuation!r}"]
        out += [f"    book: {r.book_continuation!r}"] if r.book_continuation else []
    if tolerances:
        judged = [r for r in rows if r.within_book is not None]
        good = sum(r.within_book for r in judged)
        out.append(f"{good} of {len(judged)} runs within {bound} of the book's training perplexity")
    return "\n".join(out)


def _cells(r: Row, judged: bool = False) -> list[str]:
    cells = [
        r.name,
        f"{r.book_perplexity:.1f}",
        f"{r.perplexity:.2f}",
        _ppl(r.val_perplexity),
        _ppl(r.best_val_perplexity),
        f"{r.tokens_per_sec:,.0f}",
        r.device,
        f"{r.seconds:.1f}",
    ]
    if judged:
        cells.insert(3, {None: "-", True: "yes", False: "no"}[r.within_book])
    return cells


def _ppl(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


# Named recipes: the book's runs (8.5, 9.1, 9.2, 9.3) and the studio's whole-text recipe. A preset is a
# TrainConfig's fields; any field the user gives after it overrides it.
_BY_NAME = {e.name: e.overrides for e in CHAPTER_9}

PRESETS = {
    "book-rnn": {},  # 8.5's recipe: TrainConfig's defaults
    "book-gru": _BY_NAME["scratch GRU"],
    "book-lstm": _BY_NAME["scratch LSTM"],
    "book-deep-lstm": _BY_NAME["deep nn.LSTM, 2 layers"],
    # The whole text, the last 10% held out: a concise LSTM whose recurrent weights are masked per minibatch
    # (weight drop) as well as its outputs (dropout), trained by Adam in long windows with the lr annealed to
    # 0 by the last epoch, evaluated every epoch and kept at its best; it predicts mixed with the Kneser-Ney 7-gram
    # of its training text (charrnn.models.mixture). The README's "Beat counting" says what it reaches, in what
    # time, and how it was found.
    "whole-text": {
        "max_tokens": 0,
        "model": "concise",
        "cell": "lstm",
        "num_hiddens": 512,
        "dropout": 0.5,
        "weight_drop": 0.6,
        "optimizer": "adam",
        "lr": 0.004,
        "lr_schedule": "cosine",
        "batch_size": 32,
        "num_steps": 100,
        "clip": 1.0,
        "num_epochs": 160,
        "eval_every": 1,
        "ngram_order": 7,
        "ngram_weight": 0.4,
    },
}


def preset(name: str) -> dict:
    """The fields of preset `name`, or ValueError naming the choices."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, not {name!r}")
    fields = dict(PRESETS[name])
    TrainConfig(**fields).validate()  # a preset is always a valid recipe
    return fields
