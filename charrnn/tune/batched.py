"""Training K same-shape trials of the scratch RNN together (`train_batched`), each as `charrnn.train.train`
would train it alone; the batched model and step are `charrnn.tune.batched_step`'s.

A study's trials often share (num_hiddens, batch_size, num_steps) and differ in lr, clip and seed. Each
member keeps its own init, minibatches (its own `SeqDataLoader`, seeded by its own seed), state, figures
and held-out evaluation; a member that diverges or is pruned leaves the batch at the epoch's end and
the others go on bit for bit as before (tests/tune/test_batched.py holds each member to its single run).
"""

import math
import time
from dataclasses import dataclass

import torch

from charrnn.batches import SeqDataLoader
from charrnn.device import free_bytes, resolve_device
from charrnn.evaluate import heldout_perplexity, perplexity
from charrnn.generate import predict
from charrnn.models import detach_state
from charrnn.train import EpochStats, TrainConfig, TrainResult, build_model, estimate_bytes
from charrnn.tune.batched_step import BatchedScratch, BatchedTrainer

__all__ = ["BatchedScratch", "BatchedTrainer", "MemberResult", "check_group", "train_batched"]

# What members trained together must share: the shapes, the data order's kind, the device and the budget.
SHARED = (
    "num_hiddens",
    "batch_size",
    "num_steps",
    "sampling",
    "state",
    "model",
    "device",
    "num_epochs",
    "max_tokens",
    "val_tokens",
)


@dataclass
class MemberResult(TrainResult):
    """One member's `TrainResult`, with how it ended and its own iterator (whose `state_dict` a checkpoint
    keeps, so that the member can be resumed alone by `train`)."""

    status: str = "finished"  # finished, diverged, pruned or stopped
    loader: SeqDataLoader | None = None
    # A diverged member's (epoch, model, iterator state) at its last finite epoch, as `train_recorded`
    # keeps for a checkpoint; None when it diverged in its first epoch.
    last_good: tuple | None = None


def check_group(configs: list[TrainConfig]) -> list[TrainConfig]:
    """Validate each config and refuse, naming the field, a group whose members cannot share a step."""
    if not configs:
        raise ValueError("configs must hold at least one TrainConfig")
    for config in configs:
        config.validate()
    if configs[0].model != "scratch":
        raise ValueError(f"model must be scratch to train trials batched, not {configs[0].model!r}")
    for name in SHARED:
        values = {getattr(c, name) for c in configs}
        if len(values) > 1:
            shown = ", ".join(sorted(map(repr, values)))
            raise ValueError(f"{name} must be the same for every trial trained together, not {shown}; group by it")
    return configs


def check_group_fits(configs: list[TrainConfig], vocab_size: int, device: torch.device) -> None:
    """`charrnn.train.check_fits` for K members at once."""
    need, free = len(configs) * estimate_bytes(configs[0], vocab_size), free_bytes(device)
    if need > 0.8 * free:
        raise ValueError(
            f"{len(configs)} trials of num_hiddens {configs[0].num_hiddens} trained together need about "
            f"{need / 2**30:.1f} GiB, but {device} has {free / 2**30:.1f} GiB free; train fewer at once"
        )


def _epoch(trainer: BatchedTrainer, loaders: list[SeqDataLoader], resets: bool, should_stop):
    """One pass of every member over its own minibatches. A member whose pass is shorter (its offset
    left one minibatch fewer) sits out the last steps, masked. Returns the sums (loss * tokens, grad
    norm, clipped) as a (3, K) device tensor and each member's minibatch count, or None when stopped."""
    model, K = trainer.model, len(loaders)
    passes = [iter(loader) for loader in loaders]
    counts, last, state = [0] * K, [None] * K, None
    sums = torch.zeros(3, K, device=model.W_hh.device)
    while True:
        batch = [next(p, None) for p in passes]
        active = [b is not None for b in batch]
        if not any(active):
            return sums, counts
        if should_stop is not None and should_stop():
            return None
        last = [b if b is not None else old for b, old in zip(batch, last, strict=True)]
        X, Y = torch.stack([b[0] for b in last]), torch.stack([b[1] for b in last])  # (K, batch_size, num_steps)
        if state is None or resets:
            state = model.begin_state(X.shape[1], X.device)
        else:
            state = detach_state(state)
        mask = None if all(active) else torch.tensor(active, device=X.device)
        loss, norm, clipped, state = trainer.step(X, Y, state, mask)
        figures = torch.stack([loss * Y[0].numel(), norm, clipped])  # (3, K)
        sums += figures if mask is None else torch.where(mask, figures, 0.0)
        counts = [n + a for n, a in zip(counts, active, strict=True)]


def _member_stats(epoch, sums, n, tokens, seconds, elapsed) -> EpochStats:
    loss_sum, norm_sum, clipped_sum = sums
    mean_loss = loss_sum / tokens
    return EpochStats(
        epoch=epoch,
        perplexity=perplexity(mean_loss),
        tokens_per_sec=tokens / seconds,
        grad_norm=norm_sum / n,
        clipped=clipped_sum / n,
        elapsed=elapsed,
        loss=mean_loss,
    )


def train_batched(
    corpus_indices,
    vocab,
    configs: list[TrainConfig],
    on_epoch=None,
    val: list[int] | None = None,
    should_stop=None,
    should_prune=None,
    on_end=None,
) -> list[MemberResult]:
    """Train K same-shape scratch RNNs together, each exactly as `charrnn.train.train` would train it alone.

    `configs` may differ in lr, clip, seed and the reporting cadences (predict_every, eval_every, prefix);
    every field of SHARED must agree (ValueError naming it otherwise). After every epoch each live member
    gets its own EpochStats (its tokens/s is its tokens over the epoch's shared wall time), with
    `val_perplexity` on its own cadence by `heldout_perplexity` on its own weights, passed to
    `on_epoch(member_index, stats)`. A member whose perplexity is not finite ends "diverged" there;
    `should_prune(member_index, stats)`, asked after every epoch but the last, ends it "pruned". Either
    way it leaves the batch, and the others go on unchanged. `should_stop()` is checked between
    minibatches and ends every live member "stopped" (the epoch in progress is not reported).
    `on_end(member_index, result)` is called as each member ends, with its MemberResult complete.
    Returns one MemberResult per config, in order, each with its model as a plain ScratchModel.
    """
    configs = check_group(configs)
    first, V = configs[0], len(vocab)
    device = resolve_device(first.device)
    check_group_fits(configs, V, device)
    model = BatchedScratch([build_model(V, c) for c in configs]).to(device)
    trainer = BatchedTrainer(model, [c.lr for c in configs], [c.clip for c in configs])
    loaders = [
        SeqDataLoader(corpus_indices, c.batch_size, c.num_steps, c.sampling, seed=c.seed, device=device)
        for c in configs
    ]
    results = [
        MemberResult(model=None, config=c, device=str(device), loader=ld)
        for c, ld in zip(configs, loaders, strict=True)
    ]
    live = list(range(len(configs)))  # the members still training, in the order of the model's leading dim
    good = None  # the live members' weights and iterator states at the end of the last epoch
    begin = time.perf_counter()
    for epoch in range(1, first.num_epochs + 1):
        t0 = time.perf_counter()
        out = _epoch(trainer, [loaders[i] for i in live], first.resets_state, should_stop)
        if out is None:
            for j, i in enumerate(live):
                results[i].model, results[i].status, results[i].stopped = model.member(j), "stopped", True
            return _ended(results, live, on_end)
        sums, counts = out[0].t().tolist(), out[1]  # the epoch's one host sync
        seconds, elapsed = time.perf_counter() - t0, time.perf_counter() - begin
        ended = {}
        for j, i in enumerate(live):
            tokens = counts[j] * first.batch_size * first.num_steps
            stats = _member_stats(epoch, sums[j], counts[j], tokens, seconds, elapsed)
            ended_as = _report(model.member, j, i, configs[i], stats, vocab, val, device, on_epoch, should_prune)
            results[i].history.append(stats)
            if ended_as:
                ended[j] = ended_as
        for j, status in ended.items():
            i = live[j]
            results[i].model, results[i].status, results[i].diverged = model.member(j), status, status == "diverged"
            if status == "diverged" and good is not None:
                results[i].last_good = (epoch - 1, model.member(j, good[0]), good[1][j])
        _ended(results, [live[j] for j in ended], on_end)
        if ended:
            keep = [j for j in range(len(live)) if j not in ended]
            live = [live[j] for j in keep]
            if not live:
                return results
            trainer.select(keep)
        good = (model.snapshot(), [loaders[i].state_dict() for i in live])  # one copy of the weights an epoch
    for j, i in enumerate(live):
        results[i].model = model.member(j)
    return _ended(results, live, on_end)


def _ended(results: list[MemberResult], members: list[int], on_end) -> list[MemberResult]:
    if on_end is not None:
        for i in members:
            on_end(i, results[i])
    return results


def _report(member, j, i, config, stats, vocab, val, device, on_epoch, should_prune) -> str | None:
    """Fill in member j's sample and held-out figure on its cadence, report it, and say whether it ends
    here ("diverged" or "pruned")."""
    diverged = not math.isfinite(stats.perplexity)  # as `train`: no sample, no evaluation of broken weights
    last = stats.epoch == config.num_epochs
    sample = not diverged and stats.epoch % config.predict_every == 0
    evaluate = not diverged and bool(val) and (stats.epoch % config.eval_every == 0 or last)
    if sample or evaluate:
        single = member(j)
        if sample:
            stats.sample = predict(single, vocab, config.prefix, 50, device=device)
        if evaluate:
            stats.val_perplexity = heldout_perplexity(single, val, device)
    if on_epoch is not None:
        on_epoch(i, stats)
    if diverged:
        return "diverged"
    if not last and should_prune is not None and should_prune(i, stats):
        return "pruned"
    return None
