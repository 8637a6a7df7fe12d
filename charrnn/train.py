"""Training (D2L 8.5.5 `train_epoch_ch8` / `train_ch8`): clipping, SGD, state handling, perplexity.

The step computes exactly the book's update. It differs only in execution: the loss, gradient norm
and clipping decision stay on the device during an epoch (the book calls `.item()` every
minibatch), clipping and SGD use foreach kernels, and the host syncs once per epoch.
"""

import math
import sys
import time
from dataclasses import dataclass, field, fields

import torch
from torch.nn import functional as F

from charrnn.batches import SAMPLINGS, SeqDataLoader
from charrnn.cuda_graph import CudaGraphStep
from charrnn.device import free_bytes, resolve_device
from charrnn.generate import predict
from charrnn.model import ModelConfig, RNNScratch, detach_state

# Past this mean loss exp() overflows a float64: the perplexity is infinite (the book's
# `math.exp` raises OverflowError there) and we call the run diverged. With lr = 100 and no
# clipping the loss stays finite in float32 (tanh bounds the state) but passes this at once.
MAX_LOSS = math.log(sys.float_info.max)
MAX_HIDDENS = 1 << 16  # W_hh alone would be 16 GiB; check_fits refuses what the device cannot hold


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
    predict_every: int = 10

    def validate(self) -> "TrainConfig":
        """Raise ValueError naming the first field that is out of range and how to fix it."""
        for name in ("num_epochs", "batch_size", "num_steps", "num_hiddens", "predict_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 0:
            raise ValueError(f"max_tokens must be 0 (the whole text) or a positive integer, not {self.max_tokens!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, not {self.lr!r}")
        if not (isinstance(self.clip, (int, float)) and math.isfinite(self.clip) and self.clip >= 0):
            raise ValueError(f"clip (theta) must be positive, or 0 to turn clipping off, not {self.clip!r}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, not {self.sampling!r}")
        if not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, not {self.seed!r}")
        if self.num_hiddens > MAX_HIDDENS:
            raise ValueError(f"num_hiddens must be at most {MAX_HIDDENS:,}, not {self.num_hiddens:,}")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


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


@dataclass
class TrainResult:
    model: RNNScratch
    config: TrainConfig
    history: list[EpochStats] = field(default_factory=list)
    device: str = "cpu"
    stopped: bool = False  # True when the stop signal ended the run early
    diverged: bool = False  # True when the perplexity stopped being a finite number (the run ends there)

    @property
    def perplexity(self) -> float:
        return self.history[-1].perplexity if self.history else float("nan")

    @property
    def tokens_per_sec(self) -> float:
        return self.history[-1].tokens_per_sec if self.history else float("nan")

    def summary(self) -> str:
        """The book's closing line, e.g. 'perplexity 1.0, 67212.6 tokens/sec on cuda:0'."""
        return f"perplexity {self.perplexity:.1f}, {self.tokens_per_sec:.1f} tokens/sec on {self.device}"


def clip_gradients(grads: list[torch.Tensor], theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The book's `grad_clipping`: if the global L2 norm exceeds theta, scale all by theta / norm.

    Done without a host sync: the scale is min(1, theta / norm), and multiplying by exactly 1
    leaves a gradient unchanged. Returns (norm before clipping, whether it clipped) as tensors.
    """
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    if theta <= 0:
        return norm, torch.zeros((), device=norm.device)
    scale = torch.clamp(theta / norm, max=1.0)
    torch._foreach_mul_(grads, scale)
    return norm, (norm > theta).float()


class Trainer:
    """One training step at a time over one model; keeps the epoch's sums on the device.

    On CUDA the step is captured once as a CUDA graph and replayed (see `CudaGraphStep`); minibatches
    of another shape, and every step after a failed capture, run the same step eagerly.
    `cuda_graph=False` always runs it eagerly (the graph test compares the two).
    """

    def __init__(self, model: RNNScratch, config: TrainConfig, cuda_graph: bool = True):
        self.model, self.config = model, config
        self.params = list(model.parameters())
        on_cuda = self.params[0].device.type == "cuda"
        self.graph = CudaGraphStep(self.eager_step) if cuda_graph and on_cuda else None

    def step(self, X: torch.Tensor, Y: torch.Tensor, state):
        """One minibatch: forward, mean cross-entropy, backward, clip, SGD.

        Returns (loss, grad norm before clipping, clipped flag, new state), all device tensors.
        """
        if self.graph is not None:
            out = self.graph(X, Y, state)
            if out is not None:
                return out
        return self.eager_step(X, Y, state)

    def eager_step(self, X: torch.Tensor, Y: torch.Tensor, state):
        logits, state = self.model(X, state)
        y = Y.t().reshape(-1)  # time-major, to match the logits' rows
        loss = F.cross_entropy(logits, y)
        grads = torch.autograd.grad(loss, self.params)
        norm, clipped = clip_gradients(list(grads), self.config.clip)
        with torch.no_grad():
            torch._foreach_add_(self.params, grads, alpha=-self.config.lr)
        return loss.detach(), norm, clipped, state


def estimate_bytes(config: TrainConfig, vocab_size: int) -> int:
    """Rough peak memory of training, in bytes: float32 parameters with their gradients and update
    temporaries, and what backpropagation through time keeps per step (states, tanh', gradients)."""
    V, H, B, T = vocab_size, config.num_hiddens, config.batch_size, config.num_steps
    params = V * H + H * H + H + H * V + V
    return 4 * (4 * params + 5 * T * B * H + 4 * T * B * V)


def check_fits(config: TrainConfig, vocab_size: int, device: torch.device) -> None:
    """Refuse, before anything is allocated, a run the device's free memory cannot hold."""
    need, free = estimate_bytes(config, vocab_size), free_bytes(device)
    if need > 0.8 * free:
        raise ValueError(
            f"num_hiddens {config.num_hiddens} (with batch_size {config.batch_size} and num_steps "
            f"{config.num_steps}) needs about {need / 2**30:.1f} GiB, but {device} has {free / 2**30:.1f} GiB "
            "free; lower num_hiddens"
        )


def build_model(vocab_size: int, config: TrainConfig) -> RNNScratch:
    """A fresh model for `config`, initialised from `config.seed` (the book's draws, on the CPU);
    refused with a ValueError when the device cannot hold its training."""
    check_fits(config, vocab_size, resolve_device(config.device))
    generator = torch.Generator().manual_seed(config.seed)
    return RNNScratch(ModelConfig(vocab_size, config.num_hiddens), generator=generator)


def train(
    corpus,
    vocab,
    config: TrainConfig | None = None,
    on_epoch=None,
    should_stop=None,
    model: RNNScratch | None = None,
    start_epoch: int = 0,
    loader: SeqDataLoader | None = None,
) -> TrainResult:
    """Train the scratch RNN on `corpus` (a list of token indices) as the book's `train_ch8` does.

    `on_epoch(stats)` is called after every epoch; `should_stop()` is checked between minibatches
    and ends the run early (the epoch in progress is not reported). A loss that becomes inf/NaN ends
    the run after that epoch with `result.diverged`. `model`, `start_epoch` and `loader` let a
    caller continue a run from a checkpoint. Never prints or plots.
    """
    config = (config or TrainConfig()).validate()
    device = resolve_device(config.device)
    if model is None:
        model = build_model(len(vocab), config)
    model.to(device)
    if loader is None:
        loader = SeqDataLoader(
            corpus, config.batch_size, config.num_steps, config.sampling, seed=config.seed, device=device
        )
    trainer = Trainer(model, config)
    result = TrainResult(model=model, config=config, device=str(device))
    begin = time.perf_counter()
    for epoch in range(start_epoch, config.num_epochs):
        t0 = time.perf_counter()
        sums = torch.zeros(3, device=device)  # loss * tokens, grad norm, clipped
        state, tokens, n = None, 0, 0
        for X, Y in loader:
            if should_stop is not None and should_stop():
                result.stopped = True
                return result
            if state is None or config.sampling == "random":
                state = model.begin_state(X.shape[0], device)
            else:
                state = detach_state(state)
            loss, norm, clipped, state = trainer.step(X, Y, state)
            sums += torch.stack([loss * Y.numel(), norm, clipped])
            tokens += Y.numel()
            n += 1
        loss_sum, norm_sum, clipped_sum = sums.tolist()  # the epoch's one host sync
        seconds = time.perf_counter() - t0
        mean_loss = loss_sum / tokens
        stats = EpochStats(
            epoch=epoch + 1,
            perplexity=math.exp(mean_loss) if mean_loss < MAX_LOSS else math.inf,
            tokens_per_sec=tokens / seconds,
            grad_norm=norm_sum / n,
            clipped=clipped_sum / n,
            elapsed=time.perf_counter() - begin,
            loss=mean_loss,
        )
        result.diverged = not math.isfinite(stats.perplexity)
        if (epoch + 1) % config.predict_every == 0 and not result.diverged:
            stats.sample = predict(model, vocab, config.prefix, 50, device=device)
        result.history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
        if result.diverged:
            break
    return result
