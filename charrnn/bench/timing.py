"""How `python -m charrnn bench` times a cell's contenders: the same minibatches, the same warm-up, and
interleaved rounds of which each contender's best counts."""

import functools
import itertools
import resource
import time

import torch

from charrnn.batches import SeqDataLoader
from charrnn.bench.contenders import CONTENDERS, MAKERS

RECIPE_TOKENS = 10000  # the chapter trains on the first 10,000 chars
ROUNDS = 5  # timed minibatches are split into this many interleaved rounds


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def warm_up(make, batches, warmup: int, device) -> dict:
    """Build a contender (`make()`) and run its untimed warm-up (on CUDA this includes the Trainer's graph
    capture); records the peak memory that took: on CUDA above what was allocated before, on the CPU the
    process's peak RSS so far."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    c = {"step": make(), "state": None, "batches": batches, "rounds": []}
    for _ in range(warmup):
        X, Y = next(batches)
        _, c["state"] = c["step"](X, Y, c["state"])
    _sync(device)
    if device.type == "cuda":
        c["peak_memory_mb"] = (torch.cuda.max_memory_allocated(device) - before) / 2**20
    else:
        c["peak_memory_mb"] = peak_rss_mb()
    return c


def time_round(c: dict, n: int, device) -> None:
    """Run `n` minibatches of one contender and record (tokens, seconds) as one round."""
    _sync(device)
    tokens, t0 = 0, time.perf_counter()
    for _ in range(n):
        X, Y = next(c["batches"])
        _, c["state"] = c["step"](X, Y, c["state"])
        tokens += Y.numel()
    _sync(device)
    c["rounds"].append((tokens, time.perf_counter() - t0))


def minibatches(corpus: list[int], batch_size: int, num_steps: int, device):
    """Endless sequential minibatches over the recipe's 10,000 chars (more when one batch needs more)."""
    need = 2 * batch_size * num_steps + num_steps + 1
    tokens = corpus[: max(RECIPE_TOKENS, need)]
    if len(tokens) < need:
        raise ValueError(
            f"--batch-size {batch_size} x --num-steps {num_steps} needs {need:,} chars of text; "
            f"the text has {len(tokens):,}"
        )
    loader = SeqDataLoader(tokens, batch_size, num_steps, "sequential", seed=0, device=device)
    return itertools.chain.from_iterable(loader for _ in itertools.count())


def bench_shape(corpus, V, cell, batch_size, num_steps, num_hiddens, warmup, timed, device, cuda_graph=True) -> dict:
    """Time a cell's three contenders at one shape. The timed minibatches run in interleaved rounds, and
    each contender's figure is its best round (as `timeit` takes the minimum): other processes on the
    machine only ever add time, and interleaving exposes every contender to the same quiet spells."""
    contenders = {}
    for name in ("scratch", "book", "nn"):  # scratch first: in a one-cell run its peak RSS is then its own
        make = functools.partial(MAKERS[name], cell, V, num_hiddens, device, cuda_graph=cuda_graph)
        contenders[name] = warm_up(make, minibatches(corpus, batch_size, num_steps, device), warmup, device)
    rounds = min(ROUNDS, timed)
    for r in range(rounds):
        for c in contenders.values():
            time_round(c, timed // rounds + (r < timed % rounds), device)
    speed = {name: max(t / s for t, s in contenders[name]["rounds"]) for name in CONTENDERS}
    overall = {
        name: sum(t for t, _ in contenders[name]["rounds"]) / sum(s for _, s in contenders[name]["rounds"])
        for name in CONTENDERS
    }
    return {
        "cell": cell,
        "batch_size": batch_size,
        "num_steps": num_steps,
        "num_hiddens": num_hiddens,
        "tokens_per_sec": speed,
        "tokens_per_sec_overall": overall,
        "peak_memory_mb": {name: contenders[name]["peak_memory_mb"] for name in CONTENDERS},
        "ratio_scratch_book": speed["scratch"] / speed["book"],
        "ratio_scratch_nn": speed["scratch"] / speed["nn"],
    }
