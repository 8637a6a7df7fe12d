"""The one step from a user's arguments to what a worker runs: a `Search` (the study's name, the space, the base
config and how trials are sampled and pruned) with the text its trials cut theirs from and the device, checked
once and whole into a `Plan`. Every check a search needs is here, each refusal a `FieldError` naming the field:
the counts, the study's name, every point of the space with the fixed settings on the device (`check_space`:
validation and memory), and the batched group of `--parallel` (what batches, and K of the largest trials
together in memory). The study is opened from the plan (`charrnn.tune.study.open_study`), and a worker
(`charrnn.tune.tuner`, `charrnn.tune.parallel`) runs only a prepared plan: every check a user can fail happens
here, before any trial or study exists."""

import dataclasses
from dataclasses import asdict, dataclass

import torch

from charrnn.data import Corpus
from charrnn.train import TrainConfig
from charrnn.tune.batched import check_group_fits
from charrnn.tune.space import MEMORY, Dimension, FieldError, check_space, space_text
from charrnn.tune.storage import check_study_name, storage_url

MAX_PARALLEL = 64


@dataclass
class Search:
    """What one worker runs: `trials` trials of `study` in `storage` over `space`; every other
    hyperparameter is `base`'s, and `base.num_epochs` is each trial's budget."""

    study: str
    space: dict[str, Dimension]
    base: TrainConfig
    trials: int = 8
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int | None = None  # the sampler's; None: each worker draws its own
    storage: str | None = None  # a SQLAlchemy URL; None: CHARRNN_TUNE_STORAGE, else the SQLite file
    heartbeat: int = 10  # seconds between heartbeats; a trial silent for 3x that is failed and retried
    parallel: int = 1  # trials asked at once and trained batched (`charrnn.tune.parallel`)

    def settings(self, corpus) -> dict:
        """What every worker of one study must share (stored with the study, checked on joining)."""
        varied = {k for d in self.space.values() for k in d.setting(None)}  # lr_adam varies lr and optimizer
        fixed = {k: v for k, v in asdict(self.base).items() if k not in varied and k != "device"}
        return {"space": space_text(self.space), "fixed": fixed, "text": corpus.fingerprint()}


@dataclass(frozen=True)
class Plan:
    """A checked search: `search` over `corpus` (the whole text when max_tokens varies: each trial cuts its
    own), its study in `storage` (the URL `search.storage` resolves to)."""

    search: Search
    corpus: Corpus
    storage: str


def make_plan(search: Search, corpus: Corpus, device: torch.device) -> Plan:
    """Check everything about `search` before any trial or study exists; a FieldError naming what is wrong."""
    for field, value in (("trials", search.trials), ("epochs", search.base.num_epochs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise FieldError(field, f"{field} must be a positive integer, not {value!r}")
    if not isinstance(search.base.val_tokens, int) or search.base.val_tokens < 2:
        raise FieldError("val_tokens", "val_tokens must be at least 2: trials are judged on the held-out text")
    check_study_name(search.study)
    check_space(search.space, search.base, corpus, device)
    check_parallel(search, corpus, device)
    return Plan(search, corpus, storage_url(search.storage))


# What `charrnn.tune.batched` trains: the one-layer scratch rnn of 8.5 without dropout, by the book's SGD.
# Each entry: the field, whether a value of it batches, and why the search cannot be batched otherwise.
BATCHABLE = (
    ("model", lambda v: v == "scratch", "only with the scratch model; use --model scratch"),
    ("cell", lambda v: v == "rnn", "only as the rnn cell (no batched gru or lstm); use --cell rnn"),
    ("num_layers", lambda v: v == 1, "only with one layer; use --num-layers 1"),
    ("dropout", lambda v: v == 0, "only without dropout; use --dropout 0"),
    ("optimizer", lambda v: v == "sgd", "only by sgd (no batched Adam); use --optimizer sgd"),
    ("weight_decay", lambda v: v == 0, "only without weight decay; use --weight-decay 0"),
    ("ngram_order", lambda v: v == 0, "only without an n-gram mix; use --ngram-order 0"),
    ("eval_every", lambda v: v >= 1, "only evaluated at whole epochs; use --eval-every 1 or more"),
)


def check_parallel(search, corpus, device) -> None:
    """Refuse, naming --parallel, a K that cannot train: a trial of the search that is not the
    one-layer scratch rnn without dropout trained by SGD without weight decay, or K of the space's
    largest trials that would not fit in the device's memory together."""
    k = search.parallel
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_PARALLEL:
        raise FieldError("parallel", f"parallel must be a whole number from 1 to {MAX_PARALLEL}, not {k!r}")
    if k == 1:
        return
    for name, batches, why in BATCHABLE:
        dim = search.space.get(name)
        if not all(map(batches, dim.bounds() if dim else [getattr(search.base, name)])):
            raise FieldError(
                "parallel", f"trials train batched {why} and leave {name} out of the space, or --parallel 1"
            )
    corner = {d.name: max(d.bounds()) for d in search.space.values() if d.name in MEMORY}
    try:
        check_group_fits([dataclasses.replace(search.base, **corner)] * k, len(corpus.vocab), device)
    except ValueError as e:
        raise FieldError("parallel", str(e)) from None
