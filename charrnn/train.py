"""Training (D2L 8.5.5 `train_ch8`): the settings of a run, epochs of steps (`charrnn.step`), state handling,
perplexity, held-out evaluation and patience.

The step computes exactly the book's update. It differs only in execution: the loss, gradient norm
and clipping decision stay on the device during an epoch (the book calls `.item()` every
minibatch), clipping and SGD use foreach kernels, and the host syncs once per epoch.
"""

import math
import time
from dataclasses import dataclass, field, fields

import torch
from torch import nn

from charrnn.batches import SAMPLINGS, SeqDataLoader
from charrnn.device import free_bytes, resolve_device
from charrnn.evaluate import check_cadence, heldout_perplexity, mid_epoch_marks, perplexity
from charrnn.generate import predict
from charrnn.models import KINDS, ModelConfig, detach_state, make_model, mixture, param_count
from charrnn.step import Trainer

# The widest model whose checkpoint fits charrnn.runs.checkpoint.MAX_CHECKPOINT_BYTES (1 GiB) with a vocab of up to
# 5,000; check_fits also refuses what the device cannot hold.
MAX_HIDDENS = 8192
# lr and clip above this overflow float32 arithmetic (lr 1e39 is inf as a float32 scalar); any
# useful value is far below it.
MAX_STEP = 1e6
STATES = ("carry", "reset")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine")  # the book's constant lr; cosine annealing from lr to 0 over num_epochs
MAX_WEIGHT_DECAY = 1.0  # a decay of 1 per step already wipes the weights; useful values are 1e-5..0.1
MAX_PARAMS = 240_000_000  # float32 weights that fit a checkpoint (charrnn.runs.checkpoint.MAX_CHECKPOINT_BYTES, 1 GiB)


@dataclass
class TrainConfig:
    """Every hyperparameter of a run; the defaults are the book's recipe."""

    num_epochs: int = 500  # passes over the (truncated) corpus
    lr: float = 1.0  # SGD learning rate
    batch_size: int = 32  # subsequences per minibatch
    num_steps: int = 35  # time steps per subsequence
    num_hiddens: int = 512  # width of the hidden state
    max_tokens: int = 10000  # train on the first N chars (0 = all)
    sampling: str = "sequential"  # "sequential" carries the state; "random" resets it per minibatch
    clip: float = 1.0  # theta of gradient clipping by global norm (0 = no clipping)
    seed: int = 0  # seeds the init and the iterator
    device: str = "auto"  # "auto", "cpu", "cuda" or "cuda:N"
    prefix: str = "time traveller"  # greedy continuation shown every `predict_every` epochs
    predict_every: int = 10  # epochs between those continuations
    val_tokens: int = 2000  # held-out chars after the training slice (see data.split_heldout); 0 = none
    eval_every: int | float = 10  # held-out perplexity every N epochs (or 1/k of one) and at the last epoch
    state: str = "carry"  # "carry" the state across minibatches, or "reset" it before each (the book's 2nd run)
    model: str = "scratch"  # "scratch" (the book's explicit parameters) or "concise" (torch.nn's modules)
    cell: str = "rnn"  # "rnn" (8.5), "gru" (9.1) or "lstm" (9.2)
    num_layers: int = 1  # stacked recurrent layers (9.3)
    dropout: float = 0.0  # between layers and before the head, in training only (0 = the book's, none)
    weight_drop: float = 0.0  # DropConnect on W_hh, in training only (concise models; 0 = none)
    optimizer: str = "sgd"  # "sgd": the book's plain update; "adam": AdamW (Adam with decoupled weight decay)
    weight_decay: float = 0.0  # sgd: L2 added to the gradient after clipping; adam: AdamW's decay (0 = none)
    patience: int = 0  # stop after this many held-out evaluations without a new best (0 = never: the book's)
    lr_schedule: str = "constant"  # one of SCHEDULES: "cosine" lowers lr by minibatch to 0 at num_epochs
    ngram_order: int = 0  # mix the predictions with the training text's n-gram of this order (0 = none: the book's)
    ngram_weight: float = 0.0  # the n-gram's share of that mix (charrnn.models.mixture)

    def model_config(self, vocab_size: int) -> ModelConfig:
        """The model these settings train, for a vocab of `vocab_size`."""
        return ModelConfig(
            vocab_size,
            self.num_hiddens,
            self.model,
            self.cell,
            self.num_layers,
            self.dropout,
            self.weight_drop,
            self.ngram_order,
            self.ngram_weight,
        )

    @property
    def resets_state(self) -> bool:
        """Whether every minibatch starts from a zero state: asked for, or implied by random sampling."""
        return self.state == "reset" or self.sampling == "random"

    def validate(self) -> "TrainConfig":
        """Raise ValueError naming the first field that is out of range and how to fix it."""
        if not _is_int(self.patience) or self.patience < 0:
            raise ValueError(f"patience must be a positive number of evaluations, or 0 for none, not {self.patience!r}")
        check_cadence(self.eval_every)
        for name in ("num_epochs", "batch_size", "num_steps", "num_hiddens", "predict_every"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        for name, what in (("max_tokens", "the whole text"), ("val_tokens", "no held-out text")):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise ValueError(f"{name} must be 0 ({what}) or a positive integer, not {value!r}")
        if not (_is_number(self.lr) and 0 < self.lr <= MAX_STEP):
            raise ValueError(f"lr must be a positive number at most {MAX_STEP:,.0f}, not {self.lr!r}")
        if not (_is_number(self.clip) and 0 <= self.clip <= MAX_STEP):
            raise ValueError(
                f"clip (theta) must be positive and at most {MAX_STEP:,.0f}, or 0 to turn clipping off, "
                f"not {self.clip!r}"
            )
        if not (_is_number(self.weight_decay) and 0 <= self.weight_decay <= MAX_WEIGHT_DECAY):
            raise ValueError(
                f"weight_decay must be 0 (none) or a positive number at most {MAX_WEIGHT_DECAY}, "
                f"not {self.weight_decay!r}"
            )
        named = (("sampling", SAMPLINGS), ("state", STATES), ("model", KINDS), ("optimizer", OPTIMIZERS))
        for name, choices in (*named, ("lr_schedule", SCHEDULES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, not {getattr(self, name)!r}")
        if not (_is_int(self.seed) and 0 <= self.seed < 2**63):
            raise ValueError(f"seed must be an integer from 0 to 2**63 - 1, not {self.seed!r}")
        if self.num_hiddens > MAX_HIDDENS:
            raise ValueError(f"num_hiddens must be at most {MAX_HIDDENS:,}, not {self.num_hiddens:,}")
        self.model_config(2).check()
        return self

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class EpochStats:
    """What `train` reports after every epoch."""

    epoch: int  # 1-based
    perplexity: float  # exp(mean loss over the epoch's minibatches), as the book reports it
    tokens_per_sec: float
    grad_norm: float  # mean global gradient norm before clipping
    clipped: float  # share of minibatches whose gradient was clipped
    elapsed: float  # seconds since training began
    loss: float  # mean cross-entropy
    sample: str | None = None  # greedy continuation of the prefix, every predict_every epochs
    val_perplexity: float | None = None  # held-out perplexity (charrnn.evaluate); None between evaluations
    # evaluations inside the epoch (eval_every 1/k): (epochs trained when it ran, e.g. 2.25; held-out perplexity)
    val_points: list = field(default_factory=list)


@dataclass
class TrainResult:
    model: nn.Module
    config: TrainConfig
    history: list[EpochStats] = field(default_factory=list)
    device: str = "cpu"
    stopped: bool = False  # True when the stop signal ended the run early
    diverged: bool = False  # True when the perplexity stopped being a finite number (the run ends there)
    patience_ran_out: bool = False  # True when `patience` evaluations in a row found no new best held-out figure

    @property
    def perplexity(self) -> float:
        return self.history[-1].perplexity if self.history else float("nan")

    @property
    def tokens_per_sec(self) -> float:
        return self.history[-1].tokens_per_sec if self.history else float("nan")

    def summary(self) -> str:
        """The book's closing line, e.g. 'perplexity 1.0, 67212.6 tokens/sec on cuda:0'."""
        if not self.history:  # stopped before an epoch ended: there is no figure to give
            return f"no epoch was trained (stopped before one ended) on {self.device}"
        return f"perplexity {self.perplexity:.1f}, {self.tokens_per_sec:.1f} tokens/sec on {self.device}"


def estimate_bytes(config: TrainConfig, vocab_size: int) -> int:
    """Rough peak memory of training, in bytes: float32 parameters with their gradients and update
    temporaries, and what backpropagation through time keeps per step and layer (states, gates and
    their derivatives, gradients)."""
    V, H, B, T = vocab_size, config.num_hiddens, config.batch_size, config.num_steps
    G = {"rnn": 1, "gru": 3, "lstm": 4}.get(config.cell, 4)
    params = param_count(config.model_config(V))
    return 4 * (4 * params + (3 + 3 * G) * T * B * H * config.num_layers + 4 * T * B * V)


def check_fits(config: TrainConfig, vocab_size: int, device: torch.device) -> None:
    """Refuse, before anything is allocated, a model too large for a checkpoint, or a run the device's free
    memory cannot hold."""
    if param_count(config.model_config(vocab_size)) > MAX_PARAMS:
        raise ValueError(
            f"a {config.num_layers}-layer {config.cell} of num_hiddens {config.num_hiddens:,} is too large to save "
            f"(over {MAX_PARAMS:,} weights); lower num_hiddens or num_layers"
        )
    need, free = estimate_bytes(config, vocab_size), free_bytes(device)
    if need > 0.8 * free:
        raise ValueError(
            f"num_hiddens {config.num_hiddens} (with batch_size {config.batch_size} and num_steps "
            f"{config.num_steps}) needs about {need / 2**30:.1f} GiB, but {device} has {free / 2**30:.1f} GiB "
            "free; lower num_hiddens"
        )


def build_model(vocab_size: int, config: TrainConfig) -> nn.Module:
    """A fresh `config.model` model, initialised from `config.seed` on the CPU (see `make_model`);
    refused with a ValueError when the device cannot hold its training."""
    check_fits(config, vocab_size, resolve_device(config.device))
    generator = torch.Generator().manual_seed(config.seed)
    return make_model(config.model_config(vocab_size), generator=generator)


def scheduled_lr(config: TrainConfig, done: float) -> float:
    """The learning rate once the share `done` (0..1) of the run's minibatches has trained: cosine annealing
    (Loshchilov and Hutter 2017) from config.lr at the start to 0 at the end."""
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(max(done, 0.0), 1.0)))


def train(
    corpus,
    vocab,
    config: TrainConfig | None = None,
    on_epoch=None,
    should_stop=None,
    model: nn.Module | None = None,
    start_epoch: int = 0,
    loader: SeqDataLoader | None = None,
    val: list[int] | None = None,
    trainer: Trainer | None = None,
    best_val: float = math.inf,
) -> TrainResult:
    """Train the RNN on `corpus` (a list of token indices) as the book's `train_ch8` does.

    `on_epoch(stats)` is called after every epoch; `should_stop()` is checked between minibatches
    and ends the run early (the epoch in progress is not reported). A loss that becomes inf/NaN ends
    the run after that epoch with `result.diverged`. `model`, `start_epoch` and `loader` let a
    caller continue a run from a checkpoint. Never prints or plots.

    `val` (held-out indices, see `data.split_heldout`) is evaluated on the training device every `eval_every`
    epochs and at the last, into `stats.val_perplexity`; a cadence of 1/k epoch adds the k - 1 inside each into
    `stats.val_points`. A diverged epoch is not evaluated (its weights are not finite), and a stopped run's
    unfinished epoch is never reported, so its last held-out figure is the last one on the cadence. Evaluation
    draws no random numbers, so the training figures are the same with `val` as without. `trainer` (a `Trainer`
    over `model`, on its device) lets a caller read the optimizer's state for checkpoints, or continue it. With
    `config.patience` K > 0 the run ends after K epoch-end evaluations in a row without a held-out figure below
    the best so far (`best_val`: a resumed run's best before it stopped) with `result.patience_ran_out`.
    """
    config = (config or TrainConfig()).validate()
    device = resolve_device(config.device)
    if model is None:
        model = build_model(len(vocab), config)
    mixture.attach(model, corpus)  # the n-gram of a mixed model is counted on the training text only
    model.to(device).train()  # dropout on, if the model has any
    if config.dropout > 0 or config.weight_drop > 0:  # masks come from torch's RNG: seeded, so a run repeats
        torch.manual_seed(config.seed + start_epoch)
    if loader is None:
        loader = SeqDataLoader(
            corpus, config.batch_size, config.num_steps, config.sampling, seed=config.seed, device=device
        )
    trainer = trainer or Trainer(model, config)
    best, stale = best_val, 0  # the best held-out figure so far, and evaluations since it
    result = TrainResult(model=model, config=config, device=str(device))
    begin = time.perf_counter()
    for epoch in range(start_epoch, config.num_epochs):
        t0 = time.perf_counter()
        sums = torch.zeros(3, device=device)  # loss * tokens, grad norm, clipped
        state, tokens, n, per_epoch = None, 0, 0, max(1, len(loader))
        marks, points = mid_epoch_marks(config.eval_every, per_epoch) if val else set(), []
        for X, Y in loader:
            if should_stop is not None and should_stop():
                result.stopped = True
                return result
            if config.lr_schedule != "constant":
                trainer.set_lr(scheduled_lr(config, (epoch + n / per_epoch) / config.num_epochs))
            if state is None or config.resets_state:
                state = model.begin_state(X.shape[0], device)
            else:
                state = detach_state(state)
            loss, norm, clipped, state = trainer.step(X, Y, state)
            sums += torch.stack([loss * Y.numel(), norm, clipped])
            tokens += Y.numel()
            n += 1
            if n in marks:  # inside the epoch: for the curve and a pruner, not for keeping the best
                points.append((epoch + n / per_epoch, heldout_perplexity(model, val, device)))
        loss_sum, norm_sum, clipped_sum = sums.tolist()  # the epoch's one host sync
        seconds = time.perf_counter() - t0
        mean_loss = loss_sum / tokens
        stats = EpochStats(
            epoch=epoch + 1,
            perplexity=perplexity(mean_loss),
            tokens_per_sec=tokens / seconds,
            grad_norm=norm_sum / n,
            clipped=clipped_sum / n,
            elapsed=time.perf_counter() - begin,
            loss=mean_loss,
            val_points=points,
        )
        result.diverged = not math.isfinite(stats.perplexity)
        if (epoch + 1) % config.predict_every == 0 and not result.diverged:
            stats.sample = predict(model, vocab, config.prefix, 50, device=device)
        last = epoch + 1 == config.num_epochs
        if val and ((epoch + 1) % config.eval_every == 0 or last) and not result.diverged:
            stats.val_perplexity = heldout_perplexity(model, val, device)
            best, stale = (stats.val_perplexity, 0) if stats.val_perplexity < best else (best, stale + 1)
        result.history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
        result.patience_ran_out = 0 < config.patience <= stale
        if result.diverged or result.patience_ran_out:
            break
    return result
