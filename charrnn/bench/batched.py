"""Two figures for `python -m charrnn bench`, for the tanh RNN only, timed as its contenders are
(`charrnn.bench.timing`):

- `bench_trials` (`--trials K`): K trials of one shape (lr spread from 0.5 to 2, seeds 0..K-1, each on
  its own minibatches) run one after another, charrnn's single step K times per round, against the same
  K trials as one batched step (`charrnn.tune.batched_step`). The sequential side is what Tune does today.
- `bench_ceiling`: charrnn's scratch step against the matmuls it cannot avoid, alone, at the same shapes, in the
  same process: the T recurrent (B, H) @ (H, H) products, the output layer, and backward's T - 1
  recurrent products, dW_hh, dW_hq and the output layer's input gradient, into preallocated buffers,
  with nothing between them. The input projection is a row gather in charrnn (no matmul), so it is not
  in the ceiling. No version of the step can run faster than this; `ceiling_share` is how close
  the scratch step comes (1.0 would be the matmuls alone).
Each step here follows the contenders' contract, `step(X, Y, state) -> (loss, state)` (loss None).
"""

import itertools

import torch

from charrnn.batches import SeqDataLoader
from charrnn.bench.contenders import scratch_step
from charrnn.bench.timing import ROUNDS, minibatches, time_round
from charrnn.models import ModelConfig, ScratchModel, detach_state
from charrnn.step import Trainer
from charrnn.train import TrainConfig
from charrnn.tune.batched import check_group_fits
from charrnn.tune.batched_step import BatchedScratch, BatchedTrainer

LR_RANGE = (0.5, 2.0)  # the trials' learning rates, spread evenly


def trial_configs(K: int, batch_size: int, num_steps: int, num_hiddens: int) -> list[TrainConfig]:
    low, high = LR_RANGE
    lrs = [low + (high - low) * k / max(K - 1, 1) for k in range(K)]
    return [
        TrainConfig(lr=lr, seed=k, batch_size=batch_size, num_steps=num_steps, num_hiddens=num_hiddens)
        for k, lr in enumerate(lrs)
    ]


def stacked_minibatches(corpus, configs: list[TrainConfig], device):
    """Endless (X, Y) of shape (K, batch_size, num_steps): member k's minibatches from its own seed."""
    c = configs[0]
    tokens = corpus[: max(10000, 2 * c.batch_size * c.num_steps + c.num_steps + 1)]
    streams = [
        itertools.chain.from_iterable(
            SeqDataLoader(tokens, c.batch_size, c.num_steps, seed=m.seed, device=device) for _ in itertools.count()
        )
        for m in configs
    ]
    for batch in zip(*streams, strict=True):  # endless, all of them
        yield torch.stack([X for X, _ in batch]), torch.stack([Y for _, Y in batch])


def _models(V: int, configs: list[TrainConfig], device) -> list[ScratchModel]:
    return [
        ScratchModel(ModelConfig(V, c.num_hiddens), generator=torch.Generator().manual_seed(c.seed)).to(device)
        for c in configs
    ]


def sequential_step(V: int, configs: list[TrainConfig], device):
    """K single trials, one after another: `Trainer.step` for each member's own minibatch."""
    models = _models(V, configs, device)
    trainers = [Trainer(m, c) for m, c in zip(models, configs, strict=True)]

    def step(X, Y, states):
        states = states or [m.begin_state(X.shape[1], device) for m in models]
        pairs = zip(trainers, states, strict=True)
        return None, [t.step(X[k], Y[k], detach_state(s))[3] for k, (t, s) in enumerate(pairs)]

    return step


def batched_step(V: int, configs: list[TrainConfig], device):
    """The same K trials as one `BatchedScratch`, stepped at once."""
    model = BatchedScratch(_models(V, configs, device))
    trainer = BatchedTrainer(model, [c.lr for c in configs], [c.clip for c in configs])

    def step(X, Y, state):
        state = detach_state(state) if state else model.begin_state(X.shape[1], device)
        return None, trainer.step(X, Y, state)[3]

    return step


def matmul_only_step(V: int, H: int, batch_size: int, num_steps: int, device):
    """The scratch rnn step reduced to its matmuls (see the module docstring), into buffers made once."""
    B, T = batch_size, num_steps
    g = torch.Generator().manual_seed(0)

    def rand(*shape):  # normal-sized values: no denormals to slow the arithmetic
        return (torch.randn(*shape, generator=g) * 0.1).to(device)

    W_hh, W_hq, H0 = rand(H, H), rand(H, V), rand(B, H)
    Hs, dA, dlogits = rand(T, B, H), rand(T, B, H), rand(T * B, V)
    out_state, logits, dH = torch.empty_like(Hs), torch.empty(T * B, V, device=device), torch.empty_like(Hs)
    dW_hh, dW_hq, dW_first = torch.empty_like(W_hh), torch.empty_like(W_hq), torch.empty_like(W_hh)

    def step(X, Y, state):
        for t in range(T):  # forward recurrence: H_{t-1} @ W_hh
            torch.mm(Hs[t - 1] if t else H0, W_hh, out=out_state[t])
        torch.mm(Hs.view(-1, H), W_hq, out=logits)  # output layer
        torch.mm(dlogits, W_hq.t(), out=dH.view(-1, H))  # its input gradient
        torch.mm(Hs.view(-1, H).t(), dlogits, out=dW_hq)
        for t in range(T - 2, -1, -1):  # backward recurrence: dA_{t+1} @ W_hh^T
            torch.mm(dA[t + 1], W_hh.t(), out=out_state[t])
        torch.mm(H0.t(), dA[0], out=dW_first)
        torch.addmm(dW_first, Hs[:-1].reshape(-1, H).t(), dA[1:].reshape(-1, H), out=dW_hh)
        return None, state

    return step


def _interleaved(contenders: dict, warmup: int, timed: int, device) -> dict:
    """Warm each contender up, then time them in interleaved rounds; each one's best round, in tokens/s."""
    for c in contenders.values():
        for _ in range(warmup):
            X, Y = next(c["batches"])
            _, c["state"] = c["step"](X, Y, c["state"])
    rounds = min(ROUNDS, timed)
    for r in range(rounds):
        for c in contenders.values():
            time_round(c, timed // rounds + (r < timed % rounds), device)
    return {name: max(t / s for t, s in c["rounds"]) for name, c in contenders.items()}


def check_trials(V, batch_size, num_steps, num_hiddens, K, device) -> None:
    """Refuse, before any timing, K trials the device cannot hold side by side (naming --trials)."""
    try:
        check_group_fits(trial_configs(K, batch_size, num_steps, num_hiddens), V, device)
    except ValueError as e:
        raise ValueError(f"--trials {K}: {e}") from None


def bench_trials(corpus, V, batch_size, num_steps, num_hiddens, K, warmup, timed, device) -> dict:
    """K trials one after another against the same K batched: each side's total tokens/s and the ratio."""
    check_trials(V, batch_size, num_steps, num_hiddens, K, device)
    configs = trial_configs(K, batch_size, num_steps, num_hiddens)
    contenders = {
        name: {
            "step": make(V, configs, device),
            "state": None,
            "batches": stacked_minibatches(corpus, configs, device),
            "rounds": [],
        }
        for name, make in (("sequential", sequential_step), ("batched", batched_step))
    }
    speed = _interleaved(contenders, warmup, timed, device)
    return {
        "trials": K,
        "trial_lrs": [c.lr for c in configs],
        "tokens_per_sec_trials": speed,
        "ratio_batched_sequential": speed["batched"] / speed["sequential"],
    }


def bench_ceiling(corpus, V, batch_size, num_steps, num_hiddens, warmup, timed, device) -> dict:
    """The scratch rnn step against its matmuls alone, at one shape: both in tokens/s, and its share."""
    contenders = {
        "scratch": scratch_step("rnn", V, num_hiddens, device),
        "matmul_only": matmul_only_step(V, num_hiddens, batch_size, num_steps, device),
    }
    contenders = {
        name: {"step": step, "state": None, "batches": minibatches(corpus, batch_size, num_steps, device), "rounds": []}
        for name, step in contenders.items()
    }
    speed = _interleaved(contenders, warmup, timed, device)
    return {
        "tokens_per_sec_ceiling": speed,
        "ceiling_share": speed["scratch"] / speed["matmul_only"],
    }
