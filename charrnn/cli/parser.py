"""The CLI's parser: every command's flags (their words for the library's settings: `charrnn.cli.flags`)."""

import argparse

from charrnn.baseline import MAX_ORDER, SMOOTHINGS
from charrnn.batches import SAMPLINGS
from charrnn.book import PRESETS
from charrnn.cli.argtypes import (
    at_most,
    clip_theta,
    corpus,
    database_url,
    dropout,
    evaluation_cadence,
    input_file,
    non_negative_float,
    non_negative_int,
    num_layers,
    num_preds,
    output_file,
    positive_int,
    prefix,
    run_id,
    seed,
    step_size,
    weight_decay,
)
from charrnn.data import MODES
from charrnn.models import CELLS, KINDS
from charrnn.runs.runner import run_name  # one cap (200 characters) for the app's names and --name
from charrnn.train import OPTIMIZERS, SCHEDULES, STATES, TrainConfig

ngram_order = at_most(positive_int, MAX_ORDER)
mix_order = at_most(non_negative_int, MAX_ORDER)


class ArgumentParser(argparse.ArgumentParser):
    """Bad arguments end with ONE line that names the flag and the problem (exit 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_corpus_args(p, default_max_tokens=10000):
    d = TrainConfig()
    p.add_argument(
        "--corpus",
        type=corpus,
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


def add_train_args(p):
    d = TrainConfig()
    p.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        help="fill the settings from a recipe: the book's (book-rnn, book-gru, book-lstm, book-deep-lstm) or "
        "whole-text; flags given beside it override it",
    )
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help=f"number of epochs (default: {d.num_epochs}); with --resume, the new total (default: the run's own)",
    )
    p.add_argument("--lr", type=step_size, default=d.lr, help="learning rate (default: %(default)s, the book's SGD)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer, help="'sgd' (the book's) or 'adam' (AdamW)")
    p.add_argument(
        "--lr-schedule",
        choices=SCHEDULES,
        default=d.lr_schedule,
        help="'constant' (the book's) or 'cosine': lr falls by minibatch to 0 at the last epoch",
    )
    p.add_argument(
        "--weight-decay",
        type=weight_decay,
        default=d.weight_decay,
        help="sgd: L2 on the gradient; adam: AdamW's decoupled decay (default: 0, none)",
    )
    p.add_argument("--num-hiddens", type=positive_int, default=d.num_hiddens, help="hidden width (default: 512)")
    p.add_argument("--clip", type=clip_theta, default=d.clip, help="gradient clipping theta, 0 for none")
    p.add_argument("--seed", type=seed, default=d.seed, help="seeds the init and the iterator (default: 0)")
    p.add_argument("--device", default=d.device, help="auto (CUDA if present), cpu, cuda or cuda:N")
    p.add_argument("--save", metavar="PATH", type=output_file, help="also write the final checkpoint here")
    p.add_argument("--overwrite", action="store_true", help="let --save replace a file that exists")
    p.add_argument(
        "--patience",
        type=positive_int,
        default=d.patience,
        help="stop after K held-out evaluations without a new best (default: never, as the book)",
    )
    p.add_argument("--name", type=run_name, help="a name for the run in the run store (default: what it is, and when)")
    p.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=50,
        help="write a checkpoint to the run store every N epochs, and at the end (default: %(default)s)",
    )
    p.add_argument(
        "--resume", metavar="RUN_ID", type=run_id, help="continue a stopped or interrupted run from its checkpoint"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per epoch, then a final one")


def add_heldout_args(p):
    d = TrainConfig()
    p.add_argument(
        "--val-tokens",
        type=non_negative_int,
        default=d.val_tokens,
        help="held-out chars after the training text, 0 for none (default: %(default)s)",
    )
    p.add_argument(
        "--eval-every",
        type=evaluation_cadence,
        default=d.eval_every,
        help="epochs between held-out evaluations, and at the last; or 1/k of an epoch, such as 0.25 for 4 "
        "an epoch (default: %(default)s)",
    )
    p.add_argument(
        "--state",
        choices=STATES,
        default=d.state,
        help="'carry' the state across minibatches (sequential) or 'reset' it before each (the book's 2nd run)",
    )
    add_model_args(p)


def add_model_args(p):
    d = TrainConfig()
    p.add_argument(
        "--model",
        choices=KINDS,
        default=d.model,
        help="'scratch': the book's explicit parameters; 'concise': torch's nn.RNN / nn.GRU / nn.LSTM (8.6, 9.x)",
    )
    p.add_argument(
        "--cell",
        choices=CELLS,
        default=d.cell,
        help="'rnn' (8.5), 'gru' (9.1) or 'lstm' (9.2); nn.GRU resets after W_hh, so concise and scratch GRU differ",
    )
    p.add_argument("--num-layers", type=num_layers, default=d.num_layers, help="stacked layers (9.3; default: 1)")
    p.add_argument(
        "--dropout",
        type=dropout,
        default=d.dropout,
        help="dropout between layers and before the head, in training only (default: 0, the book's)",
    )
    p.add_argument(
        "--weight-drop",
        type=dropout,
        default=d.weight_drop,
        help="DropConnect on the recurrent weights W_hh, one mask per minibatch, in training only; "
        "concise models (default: 0)",
    )
    p.add_argument(
        "--ngram-order",
        type=mix_order,
        default=d.ngram_order,
        help="mix the model's predictions with the Kneser-Ney n-gram of its training text, of this order "
        "(default: 0, no mix)",
    )
    p.add_argument(
        "--ngram-weight",
        type=non_negative_float,
        default=d.ngram_weight,
        help="the n-gram's share of that mix, below 1 (the whole-text preset's: 0.4)",
    )


def checkpoint_epoch(text: str) -> str | int:
    """`generate --epoch`: best, last, or the number of an epoch the run has a checkpoint of."""
    if text in ("best", "last"):
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be best, last or an epoch number, not {text[:40]!r}") from None


def add_generate_args(p):
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="PATH", type=input_file, help="a checkpoint (`train --save`)")
    source.add_argument("--run", metavar="RUN_ID", type=run_id, help="a stored run (see --epoch)")
    p.add_argument(
        "--epoch",
        type=checkpoint_epoch,
        default=None,
        help="with --run: 'best' (the best held-out checkpoint, else the last; the default), 'last', or an epoch",
    )
    p.add_argument("--prefix", type=prefix, default=TrainConfig.prefix, help="text to warm up on")
    p.add_argument("--num-preds", type=num_preds, default=50, help="chars to generate (default: %(default)s)")
    p.add_argument(
        "--temperature",
        type=non_negative_float,
        default=0.0,
        help="0 = the book's greedy decoding; > 0 samples from softmax(logits / T)",
    )
    p.add_argument("--top-k", type=positive_int, default=None, help="sample only among the K likeliest chars")
    p.add_argument("--seed", type=seed, default=None, help="makes sampling reproducible")
    p.add_argument("--device", default="cpu", help="cpu, auto, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def build_parser(add_bench_arguments, add_tune_arguments=None) -> argparse.ArgumentParser:
    """Every command's flags; `add_bench_arguments(parser)` adds `bench`'s (charrnn.cli.bench's,
    passed in), `add_tune_arguments` `tune`'s (None unless the command is tune, or where optuna is missing)."""
    parser = ArgumentParser(prog="python -m charrnn", description="Train and sample the book's character RNN.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    p = sub.add_parser("info", help="corpus length, vocab and minibatch shapes")
    add_corpus_args(p)
    p.add_argument("--num-hiddens", type=positive_int, default=512, help="hidden width for the state shape")
    p.add_argument(
        "--val-tokens", type=non_negative_int, default=TrainConfig.val_tokens, help="held-out chars, as in train"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = sub.add_parser("train", help="train the scratch RNN (the book's recipe by default)")
    add_corpus_args(p)
    add_train_args(p)
    add_heldout_args(p)
    add_generate_args(sub.add_parser("generate", help="continue a prefix with a trained checkpoint"))
    p = sub.add_parser("runs", help="list the runs in the run store; delete one; mark a stuck one interrupted")
    p.add_argument("--json", action="store_true", help="print one JSON list")
    actions = p.add_subparsers(dest="action", parser_class=ArgumentParser)
    for action, text in (
        ("delete", "delete a run, its curve and its checkpoints"),
        ("stop", "ask a running run to stop, wherever it trains (it stops resumably within seconds)"),
        ("mark-interrupted", "mark a run stuck as running (its process is gone) interrupted, to resume or delete it"),
    ):
        actions.add_parser(action, help=text).add_argument("run_id", metavar="RUN_ID", type=run_id)
    copy = actions.add_parser("copy", help="copy runs, their curves and checkpoints to or from another run store")
    other = copy.add_mutually_exclusive_group(required=True)
    other.add_argument("--to", dest="to_url", metavar="URL", type=database_url, help="copy this store's runs there")
    other.add_argument("--from", dest="from_url", metavar="URL", type=database_url, help="copy that store's runs here")
    copy.add_argument("run_ids", metavar="RUN_ID", nargs="*", type=run_id, help="the runs to copy (default: all)")
    add_bench_arguments(sub.add_parser("bench", help="time the book's loop, the scratch step and nn.* per cell"))
    p = sub.add_parser(
        "reproduce", help="the book's runs (500 epochs each) beside its figures: chapter 8's three or 9's five"
    )
    # Strings, so that "--chapter nine" is told the choices too (an int type would only say "invalid int").
    p.add_argument("--chapter", choices=("8", "9"), default="8", help="8: the RNN (default); 9: GRU, LSTM, deep")
    p.add_argument("--corpus", type=corpus, default="time_machine", help="time_machine (default) or fallback")
    p.add_argument("--epochs", type=positive_int, default=None, help="epochs of each run (default: the book's 500)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="print one JSON list, a row per run")
    p = sub.add_parser("baseline", help="the n-gram yardstick's held-out perplexity on a run's split")
    add_corpus_args(p)
    p.add_argument(
        "--val-tokens", type=non_negative_int, default=TrainConfig.val_tokens, help="held-out chars, as in train"
    )
    p.add_argument("--order", type=ngram_order, default=5, help="n: predict from the n - 1 chars before (default: 5)")
    p.add_argument("--smoothing", choices=SMOOTHINGS, default="kneser-ney", help="interpolated smoothing")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = sub.add_parser("tune", help="a hyperparameter search on Optuna (see README: Tune)")
    if add_tune_arguments is not None:  # only when the command is tune: the others never import optuna
        add_tune_arguments(p)
    for command in (*sub.choices.values(), *actions.choices.values()):
        command.add_argument(  # SUPPRESS: `runs delete`'s own default must not hide one given to `runs`
            "--database",
            metavar="URL",
            type=database_url,
            default=argparse.SUPPRESS,
            help="the run store's database: postgresql://user:password@host/db (default: CHARRNN_DATABASE_URL, "
            "else the SQLite file in CHARRNN_HOME)",
        )
    return parser
