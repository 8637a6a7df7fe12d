"""The book's own training loop, written literally, for `python -m charrnn bench` to time: one per cell.

- rnn: D2L 8.5's `rnn` (`H = tanh(X W_xh + H W_hh + b_h)`);
- gru: D2L 9.1's `gru` (reset gate applied to H before W_hh);
- lstm: D2L 9.2's `lstm` (state `(H, C)`).
Each as the book runs it: `get_params` (N(0, 0.01^2) weights, zero biases, drawn in the book's order),
`RNNModelScratch.__call__` (explicit one-hot of X.T), a Python loop of per-step matmuls under autograd,
`grad_clipping` with a Python-level norm and `if norm > theta` (a host sync), `sgd` (`p -= lr * p.grad`,
then zero the gradient), and `train_epoch_ch8`'s per-minibatch body (state detached, mean cross-entropy,
`loss.item()` for its Accumulator). Drawn from a generator seeded 0, the parameters equal the scratch
model's (`charrnn.models.ScratchModel`, which draws the same numbers in the same order).
"""

import torch
from torch.nn import functional as F

GATES = {"rnn": "h", "gru": "zrh", "lstm": "ifoc"}  # one (W_x*, W_h*, b_*) triple per letter, in draw order
STATE_PARTS = {"rnn": 1, "gru": 1, "lstm": 2}  # (H,) or (H, C)


def get_params(cell: str, vocab_size: int, num_hiddens: int, device, generator: torch.Generator) -> list:
    """The book's `get_params` of 8.5 / 9.1 / 9.2: per gate `normal((V, H)), normal((H, H)), zeros(H)`, then
    `W_hq, b_q`; every parameter attached to autograd."""

    def normal(shape):
        return torch.randn(size=shape, generator=generator) * 0.01

    params = []
    for _ in GATES[cell]:
        params += [normal((vocab_size, num_hiddens)), normal((num_hiddens, num_hiddens)), torch.zeros(num_hiddens)]
    params += [normal((num_hiddens, vocab_size)), torch.zeros(vocab_size)]
    return [p.to(device).requires_grad_(True) for p in params]


def rnn(inputs, state, params):
    """D2L 8.5's `rnn`. inputs: (num_steps, batch_size, vocab_size), one-hot."""
    W_xh, W_hh, b_h, W_hq, b_q = params
    (H,) = state
    outputs = []
    for X in inputs:
        H = torch.tanh(torch.mm(X, W_xh) + torch.mm(H, W_hh) + b_h)
        Y = torch.mm(H, W_hq) + b_q
        outputs.append(Y)
    return torch.cat(outputs, dim=0), (H,)


def gru(inputs, state, params):
    """D2L 9.1's `gru`."""
    W_xz, W_hz, b_z, W_xr, W_hr, b_r, W_xh, W_hh, b_h, W_hq, b_q = params
    (H,) = state
    outputs = []
    for X in inputs:
        Z = torch.sigmoid((X @ W_xz) + (H @ W_hz) + b_z)
        R = torch.sigmoid((X @ W_xr) + (H @ W_hr) + b_r)
        H_tilda = torch.tanh((X @ W_xh) + ((R * H) @ W_hh) + b_h)
        H = Z * H + (1 - Z) * H_tilda
        Y = H @ W_hq + b_q
        outputs.append(Y)
    return torch.cat(outputs, dim=0), (H,)


def lstm(inputs, state, params):
    """D2L 9.2's `lstm`."""
    [W_xi, W_hi, b_i, W_xf, W_hf, b_f, W_xo, W_ho, b_o, W_xc, W_hc, b_c, W_hq, b_q] = params
    (H, C) = state
    outputs = []
    for X in inputs:
        I = torch.sigmoid((X @ W_xi) + (H @ W_hi) + b_i)
        F_ = torch.sigmoid((X @ W_xf) + (H @ W_hf) + b_f)  # F is torch.nn.functional here
        O = torch.sigmoid((X @ W_xo) + (H @ W_ho) + b_o)
        C_tilda = torch.tanh((X @ W_xc) + (H @ W_hc) + b_c)
        C = F_ * C + I * C_tilda
        H = O * torch.tanh(C)
        Y = (H @ W_hq) + b_q
        outputs.append(Y)
    return torch.cat(outputs, dim=0), (H, C)


FORWARD = {"rnn": rnn, "gru": gru, "lstm": lstm}


def grad_clipping(params, theta: float) -> None:
    """D2L 8.5's `grad_clipping` (for a scratch model's parameter list)."""
    norm = torch.sqrt(sum(torch.sum(p.grad**2) for p in params))
    if norm > theta:  # a host sync, as in the book
        for p in params:
            p.grad[:] *= theta / norm


def sgd(params, lr: float, batch_size: int) -> None:
    """D2L 3.2's `sgd`; `train_epoch_ch8` calls it with batch_size=1 (the loss is already a mean)."""
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad / batch_size
            param.grad.zero_()


def book_step(cell: str, V: int, H: int, device, lr: float = 1.0, theta: float = 1.0, cuda_graph: bool = True):
    """`step(X, Y, state) -> (loss, state)`: one minibatch of `train_epoch_ch8` with the cell's model function.
    The loss is the Python float the book's Accumulator takes. `cuda_graph` is ignored: the book runs eagerly."""
    params = get_params(cell, V, H, device, torch.Generator().manual_seed(0))
    forward = FORWARD[cell]

    def step(X, Y, state):
        if state is None:  # begin_state: the book's init_*_state, zeros
            state = tuple(torch.zeros((X.shape[0], H), device=device) for _ in range(STATE_PARTS[cell]))
        else:
            for s in state:
                s.detach_()
        y = Y.T.reshape(-1)
        y_hat, state = forward(F.one_hot(X.T, V).type(torch.float32), state, params)
        loss = F.cross_entropy(y_hat, y.long()).mean()
        loss.backward()
        grad_clipping(params, theta)
        sgd(params, lr, batch_size=1)
        return loss.item(), state  # the book's metric.add(l * y.numel(), ...) takes a Python float

    step.params = params  # in get_params' order, the scratch model's order too
    return step
