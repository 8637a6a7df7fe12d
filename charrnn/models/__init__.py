"""The models: the book's RNN (8.5), GRU (9.1) and LSTM (9.2), from scratch and concise, at any depth (9.3).

One contract: `forward(X, state) -> (logits, state)`, `begin_state(batch_size, device)`, plus
`head(H)` and `trace(X, state)` for the views inside the network.
"""

from contextlib import contextmanager

import torch
from torch import nn

from charrnn.models.concise import ConciseModel
from charrnn.models.config import CELLS, KINDS, MAX_DROPOUT, MAX_LAYERS, ModelConfig
from charrnn.models.scratch import ScratchModel

__all__ = [
    "CELLS",
    "KINDS",
    "MAX_DROPOUT",
    "MAX_LAYERS",
    "ConciseModel",
    "ModelConfig",
    "ScratchModel",
    "detach_state",
    "evaluating",
    "make_model",
    "param_count",
]


def make_model(config: ModelConfig, generator: torch.Generator | None = None) -> nn.Module:
    """A fresh model of `config.kind`. Scratch draws the book's N(0, 0.01^2) init from `generator`;
    concise keeps torch's default init (as the book), seeded from one draw of `generator` inside a
    forked RNG so that the global one is left as it was. No generator: the global RNG, as torch does."""
    if config.kind == "scratch":  # both models check their config as they are built
        return ScratchModel(config, generator=generator)
    if generator is None:
        return ConciseModel(config)
    seed = int(torch.randint(2**62, (), generator=generator))
    with torch.random.fork_rng(devices=[]):  # modules are built on the CPU: no CUDA RNG to save
        torch.manual_seed(seed)
        return ConciseModel(config)


def detach_state(state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Cut the graph between minibatches (sequential partitioning) while keeping the values."""
    return tuple(s.detach() for s in state)


def param_count(config: ModelConfig) -> int:
    """How many numbers the model holds, from its shapes alone (scratch and concise differ by torch's
    second bias vector per gate)."""
    V, H, L = config.vocab_size, config.num_hiddens, config.num_layers
    G = {"rnn": 1, "gru": 3, "lstm": 4}[config.cell]
    biases = 2 if config.kind == "concise" else 1
    per_layer = [G * ((V if layer == 0 else H) * H + H * H + biases * H) for layer in range(L)]
    return sum(per_layer) + H * V + V


@contextmanager
def evaluating(model: nn.Module):
    """Eval mode (no dropout) for the block, then the mode the model was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
