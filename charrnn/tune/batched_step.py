"""K same-shape trials of the scratch RNN (D2L 8.5) stepped as one model with a leading K dimension.

A study's trials often share (num_hiddens, batch_size, num_steps) and differ in lr, clip and seed. Each
step of one trial's recurrence is a small (batch_size, H) @ (H, H) matmul; K trials stacked make it one
`baddbmm` over K, which a CPU runs faster and a GPU runs in the time of one launch. Nothing of a trial's
math changes: each member has its own init, minibatches, state, loss, gradient norm, clipping and lr, so
every member computes what its single run computes (tests/tune/test_batched.py holds it to `Trainer`,
minibatch by minibatch). The step never syncs with the host; per-member figures stay (K,) device tensors.

The forward and backward are written by hand (`_BatchedRNN`, the batched `charrnn.models.rnn._Recurrence`
with the gather and the output layer inside), for two reasons measured on a 2-core CPU:
- layouts: the recurrence runs time-major, (num_steps, K, batch_size, H), so that each step's slice is
  contiguous (`baddbmm` takes MKL's batched path only then; otherwise it loops over K matmuls), and the
  output layer and dW_hh member-major, (K, num_steps * batch_size, H), one batched matmul each;
- memory: those (num_steps, K, batch_size, H) tensors are megabytes each, and allocating them afresh
  every minibatch costs page faults worth about a tenth of the step. The trainer passes a `Workspace`
  whose buffers the next minibatch reuses.
"""

import torch
from torch import nn
from torch.nn import functional as F

from charrnn.models import ScratchModel

NAMES = ("W_xh", "W_hh", "b_h", "W_hq", "b_q")  # ScratchModel's parameters, in its order


class Workspace:
    """Named buffers reused from one call to the next. Only for a caller that finishes each forward's
    backward before the next forward (`BatchedTrainer.step`): the next forward overwrites them."""

    def __init__(self):
        self.buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape, like: torch.Tensor) -> torch.Tensor:
        buf = self.buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != like.dtype or buf.device != like.device:
            buf = self.buffers[name] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buf


class _BatchedRNN(torch.autograd.Function):
    """The forward of K scratch RNNs and its backward through time, by hand (see the module docstring).

    Per member, as ScratchModel: P_t = (W_xh + b_h)[X_t], H_t = tanh(P_t + H_{t-1} @ W_hh), and the logits
    H_t @ W_hq + b_q for all steps. The state returned carries no gradient (training detaches it).
    """

    @staticmethod
    def forward(ctx, table, rows, H0, W_hh, W_hq, b_q, ws: Workspace):
        # table: (K * V, H), member k's (W_xh + b_h) at rows k*V..; rows: (num_steps, K, batch_size) into it
        T, K, B = rows.shape
        Hn = table.shape[1]
        Hs = ws.get("Hs", (T, K, B, Hn), table)  # P_t, overwritten step by step with H_t
        torch.index_select(table, 0, rows.reshape(-1), out=Hs.view(-1, Hn))
        H = H0
        for H_t in Hs.unbind(0):
            H = H_t.baddbmm_(H, W_hh).tanh_()
        H_flat = ws.get("H_flat", (K, T * B, Hn), table)  # member-major, time-major within a member
        H_flat.view(K, T, B, Hn).copy_(Hs.transpose(0, 1))
        logits = torch.baddbmm(b_q.unsqueeze(1), H_flat, W_hq)  # (K, num_steps * batch_size, V)
        ctx.save_for_backward(rows, H0, W_hh, W_hq, Hs, H_flat)
        ctx.ws, ctx.vocab_size = ws, table.shape[0] // K
        state = Hs[-1].clone()  # not a view: the next call overwrites Hs
        ctx.mark_non_differentiable(state)
        return logits, state

    @staticmethod
    def backward(ctx, dlogits, _):
        rows, H0, W_hh, W_hq, Hs, H_flat = ctx.saved_tensors
        T, K, B, Hn = Hs.shape
        db_q = dlogits.sum(dim=1)
        dW_hq = torch.bmm(H_flat.transpose(1, 2), dlogits)
        flat = ctx.ws.get("flat", (K, T * B, Hn), Hs)  # dH member-major, later dA member-major
        torch.bmm(dlogits, W_hq.transpose(1, 2), out=flat)
        # dA_t: each step's pre-activation gradient, time-major. Walking back, dA_t = (dH_t + dA_{t+1} @
        # W_hh^T) * tanh'(A_t), with tanh' = 1 - H_t^2 computed for all steps at once before the loop.
        dA = ctx.ws.get("dA", Hs.shape, Hs)
        dA.copy_(flat.view(K, T, B, Hn).transpose(0, 1))
        one = torch.ones((), dtype=Hs.dtype, device=Hs.device)
        tanh_grad = torch.addcmul(one, Hs, Hs, value=-1, out=ctx.ws.get("tanh_grad", Hs.shape, Hs))  # 1 - H_t^2
        W_hh_T = W_hh.transpose(1, 2)
        dA[-1].mul_(tanh_grad[-1])
        for t in range(T - 2, -1, -1):
            dA[t].baddbmm_(dA[t + 1], W_hh_T).mul_(tanh_grad[t])
        dH0 = torch.bmm(dA[0], W_hh_T) if ctx.needs_input_grad[2] else None
        # dW_hh = sum_t H_{t-1}^T dA_t per member: step 1's H_0, then one batched matmul over steps 2..T.
        flat.view(K, T, B, Hn).copy_(dA.transpose(0, 1))
        dW_hh = torch.baddbmm(torch.bmm(H0.transpose(1, 2), dA[0]), H_flat[:, :-B].transpose(1, 2), flat[:, B:])
        # The gather's gradient: every step's dA added into the table row it read, as embedding's backward.
        dtable = torch.zeros(K * ctx.vocab_size, Hn, dtype=Hs.dtype, device=Hs.device)
        dtable.index_add_(0, rows.reshape(-1), dA.view(-1, Hn))
        return dtable, None, dH0, dW_hh, dW_hq, db_q, None


class BatchedScratch(nn.Module):
    """K `ScratchModel` models as one: each parameter gains a leading K dimension (W_hh: (K, H, H)).

    Contract: `forward(X, state) -> (logits, state)` with X (K, batch_size, num_steps) and logits
    (K, num_steps * batch_size, vocab_size), time-major within each member as `ScratchModel`'s rows. The
    state carries no gradient. `workspace` lends reusable buffers (see `Workspace`); None: fresh ones.
    """

    def __init__(self, members: list[ScratchModel]):
        super().__init__()
        self.config = members[0].config
        for name in NAMES:
            setattr(self, name, nn.Parameter(torch.stack([getattr(m, name).detach() for m in members])))

    @property
    def size(self) -> int:
        return self.W_hh.shape[0]

    def begin_state(self, batch_size: int, device) -> tuple[torch.Tensor]:
        return (torch.zeros((self.size, batch_size, self.config.num_hiddens), device=device),)

    def forward(self, X: torch.Tensor, state: tuple[torch.Tensor], workspace: Workspace | None = None):
        K, V, Hn = self.size, self.config.vocab_size, self.config.num_hiddens
        # Member k's row x of (W_xh + b_h) is row k * V + x of the stacked table: one gather for all.
        table = (self.W_xh + self.b_h.unsqueeze(1)).reshape(K * V, Hn)
        rows = X.permute(2, 0, 1) + torch.arange(K, device=X.device).view(1, K, 1) * V  # (num_steps, K, batch)
        logits, H = _BatchedRNN.apply(table, rows, state[0], self.W_hh, self.W_hq, self.b_q, workspace or Workspace())
        return logits, (H,)

    def select(self, keep: list[int]) -> None:
        """Keep only the members at these positions (in this order): the others stop costing compute."""
        index = torch.tensor(keep, device=self.W_hh.device)
        for name in NAMES:
            setattr(self, name, nn.Parameter(getattr(self, name).detach().index_select(0, index)))

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A copy of every member's weights, for `member(k, snapshot)` later."""
        return {name: getattr(self, name).detach().clone() for name in NAMES}

    def member(self, k: int, weights: dict[str, torch.Tensor] | None = None) -> ScratchModel:
        """Member k as a plain `ScratchModel` holding a copy of its weights (or of its weights in a `snapshot`)."""
        source = weights or dict(self.named_parameters())
        # a private generator: the global RNG is untouched
        model = ScratchModel(self.config, generator=torch.Generator())
        with torch.no_grad():
            for name in NAMES:
                getattr(model, name).copy_(source[name][k])
        return model.to(self.W_hh.device)


def _per_member(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (K,) tensor shaped to broadcast over a (K, ...) tensor."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def clip_batched(grads: list[torch.Tensor], clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`charrnn.train.clip_gradients` per member: member k's gradients scaled by min(1, clip_k / norm_k)
    in place, where norm_k is its own global norm; clip_k = 0 leaves member k unclipped. No host sync.
    Returns (norms before clipping, whether each clipped), both (K,)."""
    K = grads[0].shape[0]
    norms = torch.stack([torch.linalg.vector_norm(g.reshape(K, -1), dim=1) for g in grads])  # (params, K)
    norm = torch.linalg.vector_norm(norms, dim=0)
    on = clip > 0
    scale = torch.where(on, torch.clamp(clip / norm, max=1.0), torch.ones_like(norm))
    for g in grads:
        g.mul_(_per_member(scale, g))
    return norm, (on & (norm > clip)).float()


class BatchedTrainer:
    """`charrnn.train.Trainer` for a `BatchedScratch`: per-member loss, clipping and SGD, as (K,) tensors."""

    def __init__(self, model: BatchedScratch, lr: list[float], clip: list[float]):
        device = model.W_hh.device
        self.model, self.workspace = model, Workspace()
        self.lr = torch.tensor(lr, dtype=torch.float32, device=device)
        self.clip = torch.tensor(clip, dtype=torch.float32, device=device)

    def select(self, keep: list[int]) -> None:
        self.model.select(keep)
        index = torch.tensor(keep, device=self.lr.device)
        self.lr, self.clip = self.lr.index_select(0, index), self.clip.index_select(0, index)

    def step(self, X: torch.Tensor, Y: torch.Tensor, state, active: torch.Tensor | None = None):
        """One minibatch for every member: X, Y (K, batch_size, num_steps). `active` (K,) bool: a member
        that is False gets no update (its weights stay bit for bit as they were); None: all are active.

        Returns (losses, grad norms before clipping, clipped flags, new state): (K,) device tensors
        and the state; a masked member's figures are to be ignored.
        """
        params = list(self.model.parameters())
        logits, state = self.model(X, state, self.workspace)  # backward runs before the next call: reuse is safe
        K, _, V = logits.shape
        y = Y.transpose(1, 2).reshape(-1)  # (K * num_steps * batch_size,), time-major per member like the rows
        losses = F.cross_entropy(logits.reshape(-1, V), y, reduction="none").view(K, -1).mean(dim=1)
        # Members share no parameter, so the gradient of the sum is each member's own gradient.
        grads = list(torch.autograd.grad(losses.sum(), params))
        if active is not None:  # zeroed, not scaled: a masked member's gradient may be NaN
            grads = [torch.where(_per_member(active, g), g, 0.0) for g in grads]
        norm, clipped = clip_batched(grads, self.clip)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p.addcmul_(g, _per_member(-self.lr, g))  # p + g * -lr, the product Trainer's update forms
        return losses.detach(), norm, clipped, state
