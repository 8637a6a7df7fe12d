"""The book's concise models (8.6 `RNNModel`, 9.1-9.3): `torch.nn.RNN`, `nn.GRU` or `nn.LSTM` on one-hot
input, then a Linear head. Attributes are named `rnn` and `linear` as in the book, so are the
checkpoint keys. Dropout between layers is torch's own; the one before the head is ours, so that
both kinds drop the same connections. `weight_drop` masks each W_hh (DropConnect) once per minibatch in training.

`nn.GRU` applies its reset gate after the recurrent product, r * (W_hn h + b_hn), where the book's GRU
(9.1) multiplies the state first, (R * H) W_hh: the concise GRU is a different function from the scratch
one. `nn.LSTM` and `nn.RNN` compute the book's functions.
"""

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from charrnn.models import lstm, rnn
from charrnn.models.config import ModelConfig

MODULES = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class ConciseModel(nn.Module):
    """Same contract as `ScratchModel`; its state is `(H,)` or `(H, C)` with each (num_layers, batch_size,
    num_hiddens), the shapes torch's modules take."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config.check()
        layers, p = config.num_layers, config.dropout
        self.rnn = MODULES[config.cell](config.vocab_size, config.num_hiddens, layers, dropout=p if layers > 1 else 0)
        self.linear = nn.Linear(config.num_hiddens, config.vocab_size)
        self._hh = [n for n, _ in self.rnn.named_parameters() if n.startswith("weight_hh")]  # what weight drop masks

    def begin_state(self, batch_size: int, device) -> tuple[torch.Tensor, ...]:
        shape = (self.config.num_layers, batch_size, self.config.num_hiddens)
        parts = 2 if self.config.cell == "lstm" else 1
        return tuple(torch.zeros(shape, device=device) for _ in range(parts))

    def forward(self, X: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        inputs = self._one_hot(X)  # (num_steps, batch_size, vocab_size)
        state = state if self.config.cell == "lstm" else state[0]
        if self.training and self.config.weight_drop > 0:  # one mask on each W_hh for the whole minibatch
            weights = dict(self.rnn.named_parameters())
            for name in self._hh:
                weights[name] = F.dropout(weights[name], self.config.weight_drop, True)
            Y, new = functional_call(self.rnn, weights, (inputs, state))
        else:
            Y, new = self.rnn(inputs, state)  # Y: (T, B, H)
        if self.config.dropout > 0:
            Y = F.dropout(Y, self.config.dropout, self.training)
        logits = self.linear(Y.reshape(-1, Y.shape[-1]))  # (num_steps * batch_size, vocab_size), time-major
        return logits, (tuple(new) if self.config.cell == "lstm" else (new,))

    def _one_hot(self, X: torch.Tensor) -> torch.Tensor:
        return F.one_hot(X.t(), self.config.vocab_size).to(self.linear.weight.dtype)

    def head(self, H: torch.Tensor) -> torch.Tensor:
        return self.linear(H)

    def book_params(self, layer: int) -> dict[str, torch.Tensor]:
        """Layer `layer`'s weights in the book's orientation and names (X @ W_x*, H @ W_h*); torch keeps two
        biases where the book has one, so b_* is their sum, except the GRU's b_hn, which the reset gate scales
        and which is kept apart as `b_hn`."""
        m, cell = self.rnn, self.config.cell
        W_i, W_h = getattr(m, f"weight_ih_l{layer}"), getattr(m, f"weight_hh_l{layer}")
        b_i, b_h = getattr(m, f"bias_ih_l{layer}"), getattr(m, f"bias_hh_l{layer}")
        letters = {"rnn": "h", "gru": "rzh", "lstm": "ifco"}[cell]  # torch's row blocks, in torch's order
        out = {}
        for block, g in enumerate(letters):
            rows = slice(block * self.config.num_hiddens, (block + 1) * self.config.num_hiddens)
            out[f"W_x{g}"], out[f"W_h{g}"] = W_i[rows].t(), W_h[rows].t()
            out[f"b_{g}"] = b_i[rows] + b_h[rows]
            if cell == "gru" and g == "h":
                out["b_h"], out["b_hn"] = b_i[rows], b_h[rows]
        return out

    def trace(self, X: torch.Tensor, state: tuple) -> list[dict[str, torch.Tensor]]:
        """As `ScratchModel.trace`: the top layer step by step (torch's equations, the book's names); the
        layers below by the same equations, since torch's module runs all its layers at once."""
        inputs = self._one_hot(X)  # (num_steps, batch_size, vocab_size)
        for layer in range(self.config.num_layers):
            steps = _unroll(self, layer, inputs, tuple(s[layer] for s in state))
            inputs = torch.stack([seen["H"] for seen in steps])  # (num_steps, batch_size, num_hiddens)
        return steps


CELL_STEPS = {"rnn": rnn.step, "lstm": lstm.step}
LETTERS = {"rnn": "h", "lstm": "ifoc"}


def _torch_gru_step(p: dict, x: torch.Tensor, state: tuple) -> tuple[tuple, dict]:
    """`nn.GRU`'s step: the reset gate scales W_hn h + b_hn, after the product."""
    (H,) = state
    Z = torch.sigmoid(x @ p["W_xz"] + H @ p["W_hz"] + p["b_z"])
    R = torch.sigmoid(x @ p["W_xr"] + H @ p["W_hr"] + p["b_r"])
    N = torch.tanh(x @ p["W_xh"] + p["b_h"] + R * (H @ p["W_hh"] + p["b_hn"]))
    H = Z * H + (1 - Z) * N
    return (H,), {"H": H, "Z": Z, "R": R}


def _unroll(model: ConciseModel, layer: int, inputs: torch.Tensor, state: tuple) -> list[dict[str, torch.Tensor]]:
    """Layer `layer` step by step over `inputs` (num_steps, batch_size, in): per step, H and the gates."""
    p, cell, steps = model.book_params(layer), model.config.cell, []
    for x in inputs:
        if cell == "gru":
            state, seen = _torch_gru_step(p, x, state)
        else:
            state, seen = CELL_STEPS[cell](p, {g: x @ p[f"W_x{g}"] + p[f"b_{g}"] for g in LETTERS[cell]}, state)
        steps.append(seen)
    return steps
