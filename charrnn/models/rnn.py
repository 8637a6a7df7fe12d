"""The tanh RNN cell of D2L 8.4-8.5, its fast recurrence and its literal step.

The book computes, per time step t (X_t one-hot, shape (batch_size, vocab_size))::

    H_t = tanh(X_t @ W_xh + H_{t-1} @ W_hh + b_h)

The fast path (see `charrnn.models.scratch`) gathers X_t W_xh + b_h for all steps beforehand; here
`_Recurrence` runs H_t = tanh(P_t + H_{t-1} @ W_hh) with backpropagation through time written by hand:
the gradient for `W_hh` is one (H, T*B) @ (T*B, H) matmul instead of T small ones, tanh' is computed
for all steps at once, and no autograd graph is built per step.
"""

import torch

NAMES = ("W_xh", "W_hh", "b_h")  # one layer's parameters, in the order the book draws them
X_NAMES = ("W_xh",)  # the input weights, in the column order of the gathered projection P
B_NAMES = ("b_h",)  # their biases, in the same order
STATE = ("H",)  # the state's parts, in the order of the state tuple
GATES = ()  # what Inside can show besides H


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


def recurrence(P: torch.Tensor, state: tuple, p: dict) -> tuple[torch.Tensor, tuple]:
    """(H_1..H_T, the state after step T) from P (num_steps, batch_size, H): X_t W_xh + b_h per step."""
    Hs = _Recurrence.apply(P, state[0], p["W_hh"])
    return Hs, (Hs[-1],)


def step(p: dict, xp: dict, state: tuple) -> tuple[tuple, dict]:
    """One step written as the book writes it; xp["h"] = X_t W_xh + b_h. Returns (state, {"H": H_t})."""
    H = torch.tanh(xp["h"] + state[0] @ p["W_hh"])
    return (H,), {"H": H}
