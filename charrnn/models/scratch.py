"""The book's models from scratch (8.5 RNN, 9.1 GRU, 9.2 LSTM, stacked as in 9.3), with explicit
parameters under the book's names and a faster execution of the same function.

Each layer computes its cell's recurrence (`charrnn.models.rnn`, `gru`, `lstm`); layer l > 1 reads layer
l - 1's hidden states; the top layer feeds the head `Y_t = H_t W_hq + b_q`. Dropout, when asked for,
acts on the non-recurrent connections only (between layers and before the head, Zaremba et al. 2014)
and only in training mode.

Execution differs from the book's step-by-step formulation in ways that are exact in real arithmetic:
- `one_hot(X_t) @ W_x + b` is a row gather of `(W_x + b)`, done for all steps and all gates at once;
  above the first layer the input projections of all steps are one matmul;
- each cell's recurrence runs with a hand-written backward (see its module);
- the output layer is one (num_steps * batch_size, H) @ (H, V) matmul after the loop.
tests/models/test_parity.py and tests/models/test_gated_parity.py hold this to the book's formulation.
"""

import torch
from torch import nn
from torch.nn import functional as F

from charrnn.models import gru, lstm, rnn
from charrnn.models.config import ModelConfig, layer_name

CELL_MODULES = {"rnn": rnn, "gru": gru, "lstm": lstm}


class ScratchModel(nn.Module):
    """`forward(X, state) -> (logits, state)`, `begin_state(batch_size, device)`, as D2L's `RNNModelScratch`.

    The state is a flat tuple: per layer, the cell's parts (H, or H and C), bottom layer first. A
    one-layer RNN's state is the book's `(H,)`.
    """

    def __init__(self, config: ModelConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config.check()
        self.cell = CELL_MODULES[config.cell]
        V, H = config.vocab_size, config.num_hiddens

        def normal(shape):
            return nn.Parameter(torch.randn(shape, generator=generator) * 0.01)

        # Same draws in the same order as the book's get_params, layer by layer: N(0, 0.01^2) weights, zero
        # biases; the input weights of layers above the first read H hidden units instead of V one-hots.
        for layer in range(config.num_layers):
            for name in self.cell.NAMES:
                if name.startswith("b_"):
                    param = nn.Parameter(torch.zeros(H))
                else:
                    param = normal(((V if layer == 0 else H) if name.startswith("W_x") else H, H))
                self.register_parameter(layer_name(name, layer), param)
        self.W_hq = normal((H, V))
        self.b_q = nn.Parameter(torch.zeros(V))

    def layer_params(self, layer: int) -> dict[str, torch.Tensor]:
        """Layer `layer`'s parameters under the book's names."""
        return {name: getattr(self, layer_name(name, layer)) for name in self.cell.NAMES}

    def begin_state(self, batch_size: int, device) -> tuple[torch.Tensor, ...]:
        parts = len(self.cell.STATE) * self.config.num_layers
        return tuple(torch.zeros((batch_size, self.config.num_hiddens), device=device) for _ in range(parts))

    def _projection(self, layer: int, X: torch.Tensor, inputs: torch.Tensor | None) -> torch.Tensor:
        """Every step's input projections plus biases, all gates side by side: (num_steps, batch_size, G*H)."""
        p = self.layer_params(layer)
        W_x = torch.cat([p[n] for n in self.cell.X_NAMES], dim=1)  # (V or H, G*H)
        b = torch.cat([p[n] for n in self.cell.B_NAMES])  # (G*H,)
        if inputs is None:  # one_hot(x) @ W_x + b is row x of (W_x + b): a gather, for all steps at once
            return F.embedding(X.t(), W_x + b)
        return F.linear(inputs, W_x.t(), b)  # a fresh tensor, not a view: the recurrence writes over it

    def _dropout(self, Hs: torch.Tensor) -> torch.Tensor:
        return F.dropout(Hs, self.config.dropout, self.training) if self.config.dropout > 0 else Hs

    def forward(self, X: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        # X: (batch_size, num_steps) token indices, as the iterators yield them.
        k = len(self.cell.STATE)
        inputs, new_state = None, []
        for layer in range(self.config.num_layers):
            P = self._projection(layer, X, inputs)  # (num_steps, batch_size, G*H)
            Hs, s = self.cell.recurrence(P, state[k * layer : k * (layer + 1)], self.layer_params(layer))
            inputs = self._dropout(Hs)  # (num_steps, batch_size, num_hiddens)
            new_state.extend(s)
        H_flat = inputs.reshape(-1, inputs.shape[-1])  # (num_steps * batch_size, num_hiddens), time-major
        return torch.addmm(self.b_q, H_flat, self.W_hq), tuple(new_state)  # (num_steps * batch_size, vocab_size)

    def head(self, H: torch.Tensor) -> torch.Tensor:
        """The output layer on hidden states (..., num_hiddens) -> (..., vocab_size)."""
        return H @ self.W_hq + self.b_q

    def trace(self, X: torch.Tensor, state: tuple) -> list[dict[str, torch.Tensor]]:
        """The top layer step by step, written as the book writes its cell: per step, a dict of H and the
        cell's gates (each (batch_size, num_hiddens)), in the autograd graph of the weights and the state.
        Layers below run the fast path. No dropout (call it in eval mode or not: it never drops)."""
        k, top = len(self.cell.STATE), self.config.num_layers - 1
        inputs = None
        for layer in range(top):
            P = self._projection(layer, X, inputs)
            inputs, _ = self.cell.recurrence(P, state[k * layer : k * (layer + 1)], self.layer_params(layer))
        p = self.layer_params(top)
        xs = self._projection(top, X, inputs)  # (num_steps, batch_size, G*H): X_t W_x + b of every gate
        gates = [name[3:] for name in self.cell.X_NAMES]  # W_xz -> z
        s, steps = tuple(state[k * top :]), []
        for xp in xs:
            s, seen = self.cell.step(p, dict(zip(gates, xp.chunk(len(gates), dim=1), strict=True)), s)
            steps.append(seen)
        return steps
