"""The long short-term memory cell of D2L 9.2, its fast recurrence and its literal step.

Per time step, as the book writes it::

    I_t = sigmoid(X_t W_xi + H_{t-1} W_hi + b_i)     input gate
    F_t = sigmoid(X_t W_xf + H_{t-1} W_hf + b_f)     forget gate
    O_t = sigmoid(X_t W_xo + H_{t-1} W_ho + b_o)     output gate
    C~_t = tanh(X_t W_xc + H_{t-1} W_hc + b_c)       candidate memory
    C_t = F_t * C_{t-1} + I_t * C~_t
    H_t = O_t * tanh(C_t)

The state is (H, C). `torch.nn.LSTM` computes the same function (gate order i, f, g, o; two biases).
The fast path gathers the four input projections of all steps beforehand (P), runs the four recurrent
products as one (H, 4H) matmul per step, and writes backpropagation through time by hand.
"""

import torch

NAMES = ("W_xi", "W_hi", "b_i", "W_xf", "W_hf", "b_f", "W_xo", "W_ho", "b_o", "W_xc", "W_hc", "b_c")
# P's columns: [output | input | forget | candidate]. The three sigmoid gates side by side take one sigmoid per
# step; the three gates whose gradients start from dC side by side take one product per step in backward.
X_NAMES = ("W_xo", "W_xi", "W_xf", "W_xc")
H_NAMES = ("W_ho", "W_hi", "W_hf", "W_hc")
B_NAMES = ("b_o", "b_i", "b_f", "b_c")
STATE = ("H", "C")
GATES = ("I", "F", "O", "C")  # Inside shows the three gates and the memory cell


class _Recurrence(torch.autograd.Function):
    """H_1..H_T and C_T of the LSTM from P (num_steps, batch_size, 4H), the input projections plus biases."""

    @staticmethod
    def forward(ctx, P, H0, C0, W_h):
        T, B, H4 = P.shape
        Hn = H4 // 4
        G = P.new_empty((T, B, H4))  # the gates I, F, O, C~ of every step
        Hs, Cs, tanh_Cs = (P.new_empty((T, B, Hn)) for _ in range(3))
        H, C = H0, C0
        for t in range(T):
            A = torch.addmm(P[t], H, W_h, out=G[t])  # (batch_size, 4H): the pre-activations
            A[:, : 3 * Hn].sigmoid_()
            A[:, 3 * Hn :].tanh_()
            O, I, F, Cc = A.split(Hn, dim=1)
            C = torch.addcmul(F * C, I, Cc, out=Cs[t])
            torch.tanh(C, out=tanh_Cs[t])
            H = torch.mul(O, tanh_Cs[t], out=Hs[t])
        ctx.save_for_backward(H0, C0, W_h, G, Hs, Cs, tanh_Cs)
        return Hs, Cs[-1].clone()

    @staticmethod
    def backward(ctx, dHs, dC_T):
        H0, C0, W_h, G, Hs, Cs, tanh_Cs = ctx.saved_tensors
        T, B, Hn = Hs.shape
        O, I, F, Cc = G.split(Hn, dim=2)
        Hp = torch.cat([H0.unsqueeze(0), Hs[:-1]])  # H_{t-1} for every t
        # Everything that does not depend on the carried gradients, for all steps at once. The pre-activations'
        # gradients are [dH * tanh(C) * sigmoid'(O) | dC * C~ * sigmoid'(I) | dC * C_{t-1} * sigmoid'(F) |
        # dC * I * tanh'(C~)]: `coef` holds each factor after dH or dC, so that a step is two products.
        slope = torch.cat([G[..., : 3 * Hn] * (1 - G[..., : 3 * Hn]), 1 - Cc * Cc], dim=2)  # sigmoid', tanh'
        coef = slope.mul_(torch.cat([tanh_Cs, Cc, torch.cat([C0.unsqueeze(0), Cs[:-1]]), I], dim=2))
        dC_from_H = O * (1 - tanh_Cs * tanh_Cs)  # dC_t / dH_t through H = O tanh(C)
        W_h_T = W_h.t()
        dA = G.new_empty((T, B, 4 * Hn))  # gradients of the pre-activations: [o | i | f | c~]
        dC = dC_T.clone() if dC_T is not None else torch.zeros_like(C0)
        dH = dHs[-1]
        for t in range(T - 1, -1, -1):
            dC.addcmul_(dH, dC_from_H[t])
            torch.mul(dH, coef[t, :, :Hn], out=dA[t, :, :Hn])
            torch.mul(dC.unsqueeze(1), coef[t, :, Hn:].view(B, 3, Hn), out=dA[t, :, Hn:].view(B, 3, Hn))
            dC.mul_(F[t])  # what reaches C_{t-1}
            # what reaches H_{t-1}: from its own output, and back through the four gates' recurrent products
            dH = torch.addmm(dHs[t - 1], dA[t], W_h_T) if t > 0 else dA[t] @ W_h_T
        dW_h = Hp.reshape(-1, Hn).t() @ dA.reshape(-1, 4 * Hn)
        needs = ctx.needs_input_grad
        return dA, dH if needs[1] else None, dC if needs[2] else None, dW_h


def recurrence(P: torch.Tensor, state: tuple, p: dict) -> tuple[torch.Tensor, tuple]:
    """(H_1..H_T, (H_T, C_T)) from P: the four input projections of every step."""
    W_h = torch.cat([p[name] for name in H_NAMES], dim=1)  # (H, 4H): the four recurrent products at once
    Hs, C = _Recurrence.apply(P, state[0], state[1], W_h)
    return Hs, (Hs[-1], C)


def step(p: dict, xp: dict, state: tuple) -> tuple[tuple, dict]:
    """One step written as the book writes it; xp[g] = X_t W_xg + b_g for g in i, f, o, c."""
    H, C = state
    I = torch.sigmoid(xp["i"] + H @ p["W_hi"])
    F = torch.sigmoid(xp["f"] + H @ p["W_hf"])
    O = torch.sigmoid(xp["o"] + H @ p["W_ho"])
    C_tilde = torch.tanh(xp["c"] + H @ p["W_hc"])
    C = F * C + I * C_tilde
    H = O * torch.tanh(C)
    return (H, C), {"H": H, "I": I, "F": F, "O": O, "C": C}
