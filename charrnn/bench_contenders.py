"""The three contenders `python -m charrnn bench` times; each maker returns `step(X, Y, state) -> state`.

- book: D2L 8.5 written plainly: explicit one-hot, a Python loop of per-step matmuls under autograd,
  `grad_clipping` with a Python-level norm and `if norm > theta`, `p -= lr * p.grad`, and
  `loss.item()` every minibatch as the book's accumulator does;
- charrnn: `charrnn.train.Trainer.step`, exactly as `train` (CLI and app) uses it;
- nn.RNN: the book's concise model (8.6): one-hot into `nn.RNN` (tanh, one layer) and an
  `nn.Linear` head, with charrnn's clipping and SGD (foreach, no host sync).
"""

import torch
from torch import nn
from torch.nn import functional as F

from charrnn.models import ModelConfig, ScratchModel, detach_state
from charrnn.train import TrainConfig, Trainer, clip_gradients

CONTENDERS = ("book", "charrnn", "nn_rnn")


def book_step(V: int, H: int, device, lr: float = 1.0, theta: float = 1.0):
    """D2L 8.5's RNNModelScratch + grad_clipping + sgd + train_epoch_ch8's per-minibatch body."""
    g = torch.Generator().manual_seed(0)
    params = [
        torch.randn(V, H, generator=g) * 0.01,
        torch.randn(H, H, generator=g) * 0.01,
        torch.zeros(H),
        torch.randn(H, V, generator=g) * 0.01,
        torch.zeros(V),
    ]
    params = [p.to(device).requires_grad_() for p in params]

    def rnn(inputs, state):
        W_xh, W_hh, b_h, W_hq, b_q = params
        (Hs,) = state
        outputs = []
        for X in inputs:  # inputs: (num_steps, batch_size, vocab_size)
            Hs = torch.tanh(torch.mm(X, W_xh) + torch.mm(Hs, W_hh) + b_h)
            outputs.append(torch.mm(Hs, W_hq) + b_q)
        return torch.cat(outputs, dim=0), (Hs,)

    def step(X, Y, state):
        state = state or (torch.zeros(X.shape[0], H, device=device),)
        state = tuple(s.detach() for s in state)
        y_hat, state = rnn(F.one_hot(X.T, V).type(torch.float32), state)
        loss = F.cross_entropy(y_hat, Y.T.reshape(-1))
        loss.backward()
        norm = torch.sqrt(sum(torch.sum(p.grad**2) for p in params))
        if norm > theta:  # a host sync, as in the book
            for p in params:
                p.grad[:] *= theta / norm
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
                p.grad.zero_()
        loss.item()  # the book's Accumulator takes a Python float every minibatch
        return state

    return step


def charrnn_step(V: int, H: int, device):
    """`Trainer.step` as `train` calls it, with the epoch sums kept on the device."""
    config = TrainConfig(num_hiddens=H)
    model = ScratchModel(ModelConfig(V, H), generator=torch.Generator().manual_seed(0)).to(device)
    trainer = Trainer(model, config)
    sums = torch.zeros(3, device=device)

    def step(X, Y, state):
        state = detach_state(state) if state else model.begin_state(X.shape[0], device)
        loss, norm, clipped, state = trainer.step(X, Y, state)
        sums.add_(torch.stack([loss * Y.numel(), norm, clipped]))
        return state

    return step


def nn_rnn_step(V: int, H: int, device, lr: float = 1.0, theta: float = 1.0):
    """D2L 8.6's RNNModel (nn.RNN + nn.Linear over one-hot inputs) with charrnn's clip and SGD."""
    torch.manual_seed(0)
    rnn, dense = nn.RNN(V, H).to(device), nn.Linear(H, V).to(device)
    params = list(rnn.parameters()) + list(dense.parameters())

    def step(X, Y, state):
        state = state.detach() if state is not None else torch.zeros(1, X.shape[0], H, device=device)
        out, state = rnn(F.one_hot(X.T, V).type(torch.float32), state)  # (num_steps, batch_size, H)
        loss = F.cross_entropy(dense(out.reshape(-1, H)), Y.T.reshape(-1))
        grads = torch.autograd.grad(loss, params)
        clip_gradients(list(grads), theta)
        with torch.no_grad():
            torch._foreach_add_(params, grads, alpha=-lr)
        return state

    return step


MAKERS = {"book": book_step, "charrnn": charrnn_step, "nn_rnn": nn_rnn_step}
