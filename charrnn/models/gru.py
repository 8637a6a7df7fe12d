"""The gated recurrent unit of D2L 9.1, its fast recurrence and its literal step.

Per time step, as the book writes it::

    Z_t  = sigmoid(X_t W_xz + H_{t-1} W_hz + b_z)          update gate
    R_t  = sigmoid(X_t W_xr + H_{t-1} W_hr + b_r)          reset gate
    H~_t = tanh(X_t W_xh + (R_t * H_{t-1}) W_hh + b_h)     candidate (reset applied before W_hh)
    H_t  = Z_t * H_{t-1} + (1 - Z_t) * H~_t

`torch.nn.GRU` applies the reset gate after the recurrent product (r * (W_hn h + b_hn)): another
function, which is why the concise GRU is not the scratch GRU.

The fast path gathers the three input projections of all steps beforehand (P), runs the two gates'
recurrent products as one (H, 2H) matmul per step, and writes backpropagation through time by hand:
the gates' derivatives for all steps at once before the loop, the weight gradients as one large matmul
each after it.
"""

import torch

NAMES = ("W_xz", "W_hz", "b_z", "W_xr", "W_hr", "b_r", "W_xh", "W_hh", "b_h")  # the book's draw order
X_NAMES = ("W_xz", "W_xr", "W_xh")  # P's columns: [update | reset | candidate]
B_NAMES = ("b_z", "b_r", "b_h")
STATE = ("H",)
GATES = ("Z", "R")  # update and reset gates, for Inside


class _Recurrence(torch.autograd.Function):
    """H_1..H_T of the GRU from P (num_steps, batch_size, 3H) = [X W_xz + b_z | X W_xr + b_r | X W_xh + b_h]."""

    @staticmethod
    def forward(ctx, P, H0, W_hzr, W_hh):
        T, B, H3 = P.shape
        Hn = H3 // 3
        G, Hs, RH = P.new_empty((T, B, H3)), P.new_empty((T, B, Hn)), P.new_empty((T, B, Hn))
        H = H0
        for t in range(T):
            ZR = torch.addmm(P[t, :, : 2 * Hn], H, W_hzr, out=G[t, :, : 2 * Hn]).sigmoid_()  # Z_t | R_t
            torch.mul(ZR[:, Hn:], H, out=RH[t])  # R_t * H_{t-1}, what W_hh multiplies
            Hc = torch.addmm(P[t, :, 2 * Hn :], RH[t], W_hh, out=G[t, :, 2 * Hn :]).tanh_()  # H~_t
            H = torch.lerp(Hc, H, ZR[:, :Hn], out=Hs[t])  # Z * H + (1 - Z) * H~, as H~ + Z (H - H~)
        ctx.save_for_backward(H0, W_hzr, W_hh, G, Hs, RH)
        return Hs

    @staticmethod
    def backward(ctx, dHs):
        H0, W_hzr, W_hh, G, Hs, RH = ctx.saved_tensors
        T, B, Hn = Hs.shape
        Z, R, Hc = G[..., :Hn], G[..., Hn : 2 * Hn], G[..., 2 * Hn :]
        Hp = torch.cat([H0.unsqueeze(0), Hs[:-1]])  # H_{t-1} for every t
        # Every derivative that does not depend on the carried gradient, for all steps at once.
        dz_coef = (Hp - Hc) * Z * (1 - Z)  # dA_z = dH * (H_{t-1} - H~) * sigmoid'
        dh_coef = (1 - Z) * (1 - Hc * Hc)  # dA_h = dH * (1 - Z) * tanh'
        dr_coef = Hp * R * (1 - R)  # dA_r = d(R H) * H_{t-1} * sigmoid'
        W_hzr_T, W_hh_T = W_hzr.t(), W_hh.t()
        dA = G.new_empty((T, B, 3 * Hn))  # gradients of the pre-activations: [z | r | h]
        carry = torch.zeros_like(H0)
        for t in range(T - 1, -1, -1):
            dH = dHs[t] + carry
            torch.mul(dH, dz_coef[t], out=dA[t, :, :Hn])
            torch.mul(dH, dh_coef[t], out=dA[t, :, 2 * Hn :])
            dRH = dA[t, :, 2 * Hn :] @ W_hh_T
            torch.mul(dRH, dr_coef[t], out=dA[t, :, Hn : 2 * Hn])
            carry = torch.addmm(dH * Z[t] + dRH * R[t], dA[t, :, : 2 * Hn], W_hzr_T)
        flat = dA.reshape(-1, 3 * Hn)
        dW_hzr = Hp.reshape(-1, Hn).t() @ flat[:, : 2 * Hn]
        dW_hh = RH.reshape(-1, Hn).t() @ flat[:, 2 * Hn :]
        return dA, carry if ctx.needs_input_grad[1] else None, dW_hzr, dW_hh


def recurrence(P: torch.Tensor, state: tuple, p: dict) -> tuple[torch.Tensor, tuple]:
    """(H_1..H_T, the state after step T) from P: the three input projections of every step."""
    W_hzr = torch.cat([p["W_hz"], p["W_hr"]], dim=1)  # (H, 2H): both gates' recurrent product at once
    Hs = _Recurrence.apply(P, state[0], W_hzr, p["W_hh"])
    return Hs, (Hs[-1],)


def step(p: dict, xp: dict, state: tuple) -> tuple[tuple, dict]:
    """One step written as the book writes it; xp[g] = X_t W_xg + b_g for g in z, r, h."""
    (H,) = state
    Z = torch.sigmoid(xp["z"] + H @ p["W_hz"])
    R = torch.sigmoid(xp["r"] + H @ p["W_hr"])
    H_tilde = torch.tanh(xp["h"] + (R * H) @ p["W_hh"])
    H = Z * H + (1 - Z) * H_tilde
    return (H,), {"H": H, "Z": Z, "R": R}
