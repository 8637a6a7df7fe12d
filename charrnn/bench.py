"""`python -m charrnn bench`: the book's loop, charrnn's training step and `torch.nn.RNN`, timed alike.

All three contenders run in one process, on one device, over the same minibatches (sequential
partitioning, the state carried and detached between minibatches), after the same warm-up:
- book: D2L 8.5 written plainly: explicit one-hot, a Python loop of per-step matmuls under autograd,
  `grad_clipping` with a Python-level norm and `if norm > theta`, `p -= lr * p.grad`, and
  `loss.item()` every minibatch as the book's accumulator does;
- charrnn: `charrnn.train.Trainer.step`, exactly as `train` (CLI and app) uses it;
- nn.RNN: the book's concise model (8.6): one-hot into `nn.RNN` (tanh, one layer) and an
  `nn.Linear` head, with charrnn's clipping and SGD (foreach, no host sync).
"""

import argparse
import itertools
import json
import resource
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F

from charrnn.argtypes import positive_int
from charrnn.batches import SeqDataLoader
from charrnn.data import CorpusError, load_corpus
from charrnn.device import describe, resolve_device
from charrnn.model import ModelConfig, RNNScratch, detach_state
from charrnn.train import TrainConfig, Trainer, clip_gradients

CONTENDERS = ("book", "charrnn", "nn_rnn")
SWEEP_BATCHES = (32, 128, 512)
SWEEP_HIDDENS = (256, 512, 1024)
RECIPE_TOKENS = 10000  # the chapter trains on the first 10,000 chars
ROUNDS = 5  # timed minibatches are split into this many interleaved rounds


def _hiddens(text: str) -> int:
    value = positive_int(text)
    if value > 8192:
        raise argparse.ArgumentTypeError(f"must be at most 8192, not {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where to time: auto (CUDA if present), cpu or cuda (default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=32, help="subsequences per minibatch (default: 32)")
    parser.add_argument("--num-steps", type=positive_int, default=35, help="time steps per subsequence (default: 35)")
    parser.add_argument("--num-hiddens", type=_hiddens, default=512, help="hidden width (default: 512)")
    parser.add_argument(
        "--minibatches",
        type=positive_int,
        default=50,
        help="timed minibatches per contender, after 5 untimed warm-up ones, in 5 interleaved rounds; "
        "tokens/s is the best round (default: 50)",
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="also time batch 32/128/512 x hidden 256/512/1024 (few minibatches each on CPU)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


# ---- the three contenders: each maker returns step(X, Y, state) -> state -----------------------------


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
    model = RNNScratch(ModelConfig(V, H), generator=torch.Generator().manual_seed(0)).to(device)
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


# ---- timing --------------------------------------------------------------------------------------------


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def warm_up(name: str, V: int, H: int, batches, warmup: int, device) -> dict:
    """Build a contender and run its untimed warm-up; records the peak memory that took."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    c = {"step": MAKERS[name](V, H, device), "state": None, "batches": batches, "rounds": []}
    for _ in range(warmup):
        X, Y = next(batches)
        c["state"] = c["step"](X, Y, c["state"])
    _sync(device)
    c["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mb()
    return c


def time_round(c: dict, n: int, device) -> None:
    """Run `n` minibatches of one contender and record (tokens, seconds) as one round."""
    _sync(device)
    tokens, t0 = 0, time.perf_counter()
    for _ in range(n):
        X, Y = next(c["batches"])
        c["state"] = c["step"](X, Y, c["state"])
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


def bench_shape(corpus, V, batch_size, num_steps, num_hiddens, warmup, timed, device) -> dict:
    """Time the three contenders at one shape. The timed minibatches run in interleaved rounds, and
    each contender's figure is its best round (as `timeit` takes the minimum): other processes on the
    machine only ever add time, and interleaving exposes every contender to the same quiet spells."""
    contenders = {}
    for name in ("charrnn", "book", "nn_rnn"):  # charrnn first: its peak RSS is then its own
        batches = minibatches(corpus, batch_size, num_steps, device)
        contenders[name] = warm_up(name, V, num_hiddens, batches, warmup, device)
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
        "batch_size": batch_size,
        "num_steps": num_steps,
        "num_hiddens": num_hiddens,
        "tokens_per_sec": speed,
        "tokens_per_sec_overall": overall,
        "peak_memory_mb": {name: contenders[name]["peak_memory_mb"] for name in CONTENDERS},
        "ratio_charrnn_book": speed["charrnn"] / speed["book"],
        "ratio_charrnn_nn_rnn": speed["charrnn"] / speed["nn_rnn"],
    }


def load_text():
    """The Time Machine if it is on this machine (never downloads), else the offline fallback text."""
    try:
        return load_corpus("time_machine", max_tokens=None, download=False), None
    except CorpusError as e:
        return load_corpus("fallback", max_tokens=None), str(e)


def run(args) -> int:
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        print(f"python -m charrnn bench: error: --device: {e}", file=sys.stderr)
        return 2
    text, missing = load_text()
    if missing:
        print(f"note: timing on the offline fallback text {text.name!r}: {missing}", file=sys.stderr)
    V, warmup = len(text.vocab), 5
    report = {
        "device": describe(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "text": text.name,
        "fallback_text": bool(missing),
        "vocab_size": V,
        "warmup_minibatches": warmup,
        "minibatches": args.minibatches,
        "memory": "CUDA max_memory_allocated while each contender was built and warmed up"
        if device.type == "cuda"
        else "peak RSS of the process after each contender's warm-up (charrnn first)",
    }
    report.update(
        bench_shape(text.corpus, V, args.batch_size, args.num_steps, args.num_hiddens, warmup, args.minibatches, device)
    )
    if args.sweep:
        # Each CPU cell costs seconds per minibatch at batch 512 x hidden 1024: keep it short there.
        sweep_warmup, sweep_timed = (5, args.minibatches) if device.type == "cuda" else (1, 3)
        report["sweep"] = [
            bench_shape(text.corpus, V, b, args.num_steps, h, sweep_warmup, sweep_timed, device)
            for b, h in itertools.product(SWEEP_BATCHES, SWEEP_HIDDENS)
        ]
    report["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def format_report(r: dict) -> str:
    s = r["tokens_per_sec"]
    unit = "max allocated" if r["device_type"] == "cuda" else "peak RSS so far"
    lines = [
        f"device: {r['device']}  torch {r['torch']}  text: {r['text']}"
        + ("  (offline fallback: The Time Machine is not on this machine)" if r["fallback_text"] else ""),
        f"batch {r['batch_size']} x steps {r['num_steps']} x hidden {r['num_hiddens']}, "
        f"{r['minibatches']} timed minibatches after {r['warmup_minibatches']} warm-up, in interleaved rounds",
        f"{'contender':<10} {'tokens/s':>12} {'(all rounds)':>13} {unit:>16}",
    ]
    for name in CONTENDERS:
        lines.append(
            f"{name:<10} {s[name]:>12,.0f} {r['tokens_per_sec_overall'][name]:>13,.0f} "
            f"{r['peak_memory_mb'][name]:>13,.0f} MB"
        )
    lines.append(
        f"charrnn / book: {r['ratio_charrnn_book']:.2f}x   charrnn / nn.RNN: {r['ratio_charrnn_nn_rnn']:.2f}x"
        f"   process peak RSS: {r['peak_rss_mb']:,.0f} MB"
    )
    if "sweep" in r:
        lines.append("sweep (tokens/s):")
        lines.append(
            f"{'batch':>6} {'hidden':>7} {'book':>12} {'charrnn':>12} {'nn.RNN':>12} {'/book':>7} {'/nn.RNN':>8}"
        )
        for c in r["sweep"]:
            t = c["tokens_per_sec"]
            lines.append(
                f"{c['batch_size']:>6} {c['num_hiddens']:>7} {t['book']:>12,.0f} {t['charrnn']:>12,.0f} "
                f"{t['nn_rnn']:>12,.0f} {c['ratio_charrnn_book']:>6.2f}x {c['ratio_charrnn_nn_rnn']:>7.2f}x"
            )
    return "\n".join(lines)
