"""The scratch RNN of D2L 8.5, with explicit parameters and a faster, identical execution, and the
concise `torch.nn.RNN` model of 8.6 behind the same contract (`make_model` builds either).

The book computes, per time step t (X_t one-hot, shape (batch_size, vocab_size))::

    H_t = tanh(X_t @ W_xh + H_{t-1} @ W_hh + b_h)
    Y_t = H_t @ W_hq + b_q

We compute the same function with three changes of execution, each exact in real arithmetic:
- `one_hot(X_t) @ W_xh + b_h` is the row gather `(W_xh + b_h)[X_t]`, done for all steps at once;
- the output layer is one (num_steps * batch_size, H) @ (H, V) matmul after the loop;
- backpropagation through time is written by hand (`_Recurrence`): the gradient for `W_hh` is one
  (H, T*B) @ (T*B, H) matmul instead of T small ones, tanh' is computed for all steps at once, and
  no autograd graph is built per step.
tests/test_parity.py holds this to the book's explicit one-hot, step-by-step formulation.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

KINDS = ("scratch", "concise")  # 8.5's explicit parameters; 8.6's nn.RNN with a Linear head


@dataclass
class ModelConfig:
    vocab_size: int  # V: one-hot input width and number of output classes
    num_hiddens: int = 512  # H: width of the hidden state
    kind: str = "scratch"  # one of KINDS; checkpoints written before it existed are scratch


class _Recurrence(torch.autograd.Function):
    """H_t = tanh(P_t + H_{t-1} @ W_hh) for t = 1..T, with P_t = X_t W_xh + b_h gathered beforehand.

    P is a temporary made for this call alone, so the states are written over it in place.
    """

    @staticmethod
    def forward(ctx, P, H0, W_hh):
        # P: (num_steps, batch_size, num_hiddens); H0: (batch_size, num_hiddens)
        ctx.mark_dirty(P)
        H = H0
        for H_t in P.unbind(0):
            H = H_t.addmm_(H, W_hh).tanh_()
        ctx.save_for_backward(H0, W_hh, P)
        return P  # (num_steps, batch_size, num_hiddens): H_1 .. H_T

    @staticmethod
    def backward(ctx, dHs):
        H0, W_hh, Hs = ctx.saved_tensors
        Hn = Hs.shape[-1]
        W_hh_T = W_hh.t()
        # dA: gradient w.r.t. each step's pre-activation. Walking back, dA_t = (dHs_t + dA_{t+1} @ W_hh^T)
        # * tanh'(A_t), with tanh' = 1 - H_t^2 computed for all steps at once before the loop.
        tanh_grad = torch.addcmul(Hs.new_ones(()), Hs, Hs, value=-1)  # 1 - H_t^2 in one pass
        dA = dHs.clone()  # (num_steps, batch_size, num_hiddens): dHs_t, turned into dA_t step by step
        dA[-1].mul_(tanh_grad[-1])
        for t in range(Hs.shape[0] - 2, -1, -1):
            dA[t].addmm_(dA[t + 1], W_hh_T).mul_(tanh_grad[t])
        dH0 = dA[0] @ W_hh_T if ctx.needs_input_grad[1] else None  # the state is usually detached
        # dW_hh = sum_t H_{t-1}^T dA_t: one large matmul over steps 2..T, plus step 1's H_0.
        dW_hh = torch.addmm(H0.t() @ dA[0], Hs[:-1].reshape(-1, Hn).t(), dA[1:].reshape(-1, Hn))
        return dA, dH0, dW_hh


class RNNScratch(nn.Module):
    """D2L's `RNNModelScratch`: `forward(X, state) -> (logits, state)`, `begin_state(batch_size, device)`."""

    def __init__(self, config: ModelConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        V, H = config.vocab_size, config.num_hiddens

        def normal(shape):
            return nn.Parameter(torch.randn(shape, generator=generator) * 0.01)

        # Same draws in the same order as the book's get_params: N(0, 0.01^2) weights, zero biases.
        self.W_xh = normal((V, H))
        self.W_hh = normal((H, H))
        self.b_h = nn.Parameter(torch.zeros(H))
        self.W_hq = normal((H, V))
        self.b_q = nn.Parameter(torch.zeros(V))

    def begin_state(self, batch_size: int, device) -> tuple[torch.Tensor]:
        return (torch.zeros((batch_size, self.config.num_hiddens), device=device),)

    def forward(self, X: torch.Tensor, state: tuple[torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor]]:
        # X: (batch_size, num_steps) token indices, as the iterators yield them.
        # one_hot(x) @ W_xh + b_h is row x of (W_xh + b_h): a gather, for all steps at once.
        P = F.embedding(X.t(), self.W_xh + self.b_h)  # (num_steps, batch_size, num_hiddens)
        Hs = _Recurrence.apply(P, state[0], self.W_hh)  # (num_steps, batch_size, num_hiddens)
        H_flat = Hs.reshape(-1, Hs.shape[-1])  # (num_steps * batch_size, num_hiddens), time-major
        logits = torch.addmm(self.b_q, H_flat, self.W_hq)  # (num_steps * batch_size, vocab_size)
        return logits, (Hs[-1],)


class RNNConcise(nn.Module):
    """D2L 8.6's `RNNModel`: `torch.nn.RNN` (tanh, one layer) on one-hot input, then a Linear head.

    Same contract as `RNNScratch`; its state is `((1, batch_size, num_hiddens),)`, the shape
    `nn.RNN` takes. Attributes are named `rnn` and `linear` as in the book, so are its checkpoint keys.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.rnn = nn.RNN(config.vocab_size, config.num_hiddens)
        self.linear = nn.Linear(config.num_hiddens, config.vocab_size)

    def begin_state(self, batch_size: int, device) -> tuple[torch.Tensor]:
        return (torch.zeros((1, batch_size, self.config.num_hiddens), device=device),)

    def forward(self, X: torch.Tensor, state: tuple[torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor]]:
        inputs = F.one_hot(X.t(), self.config.vocab_size).float()  # (num_steps, batch_size, vocab_size)
        Y, H = self.rnn(inputs, state[0])  # Y: (num_steps, batch_size, num_hiddens); H: (1, batch_size, H)
        logits = self.linear(Y.reshape(-1, Y.shape[-1]))  # (num_steps * batch_size, vocab_size), time-major
        return logits, (H,)


def make_model(config: ModelConfig, generator: torch.Generator | None = None) -> nn.Module:
    """A fresh model of `config.kind`. Scratch draws the book's N(0, 0.01^2) init from `generator`;
    concise keeps torch's default init (as the book), seeded from one draw of `generator` inside a
    forked RNG so that the global one is left as it was. No generator: the global RNG, as torch does."""
    if config.kind == "scratch":
        return RNNScratch(config, generator=generator)
    if config.kind != "concise":
        raise ValueError(f"model must be one of {', '.join(KINDS)}, not {config.kind!r}")
    if generator is None:
        return RNNConcise(config)
    seed = int(torch.randint(2**62, (), generator=generator))
    with torch.random.fork_rng(devices=[]):  # modules are built on the CPU: no CUDA RNG to save
        torch.manual_seed(seed)
        return RNNConcise(config)


def detach_state(state: tuple[torch.Tensor]) -> tuple[torch.Tensor]:
    """Cut the graph between minibatches (sequential partitioning) while keeping the values."""
    return tuple(s.detach() for s in state)
