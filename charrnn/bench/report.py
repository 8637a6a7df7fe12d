"""The figures of `python -m charrnn bench`, measured and laid out: per cell the three contenders
(`charrnn.bench.contenders`) timed alike (`charrnn.bench.timing`), and for the tanh RNN the matmul-only
ceiling, K trials one after another against the same K batched, and a sweep of shapes
(`charrnn.bench.batched`). The command (`charrnn.cli.bench`) reads the flags and prints what this returns."""

import itertools

import torch

from charrnn.bench.batched import bench_ceiling, bench_trials, check_trials
from charrnn.bench.contenders import CONTENDERS, label
from charrnn.bench.timing import bench_shape, peak_rss_mb
from charrnn.data import CorpusError, load_corpus
from charrnn.device import describe

SWEEP_BATCHES = (32, 128, 512)
SWEEP_HIDDENS = (256, 512, 1024)
BOOK_HIDDENS = {"rnn": 512, "gru": 256, "lstm": 256}  # chapter 8's recipe (8.5); chapter 9's runs (9.1, 9.2)


def load_text():
    """The Time Machine if it is on this machine (never downloads), else the offline fallback text."""
    try:
        return load_corpus("time_machine", max_tokens=None, download=False), None
    except CorpusError as e:
        return load_corpus("fallback", max_tokens=None), str(e)


def measure(
    text, missing, device, cells, hiddens, batch_size, num_steps, minibatches, eager=False, trials=None, sweep=False
) -> dict:
    """The report, one dict (strict JSON): `text` is a Corpus (`missing` says why it is the fallback, or None),
    `hiddens` the width per cell; trials and sweep are the rnn's, and need it among `cells`."""
    V, warmup, graph = len(text.vocab), 5, not eager
    if trials:
        check_trials(V, batch_size, num_steps, hiddens["rnn"], trials, device)
    report = {
        "device": describe(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "text": text.name,
        "fallback_text": bool(missing),
        "vocab_size": V,
        "warmup_minibatches": warmup,
        "minibatches": minibatches,
        "cuda_graph": device.type == "cuda" and graph,
        "memory": "CUDA max_memory_allocated above what was allocated, while each contender was built and warmed up"
        if device.type == "cuda"
        else "peak RSS of the process after each contender's warm-up (the first cell's scratch first)",
        "cells": {},
    }
    for cell in cells:
        shape = (text.corpus, V, cell, batch_size, num_steps, hiddens[cell])
        report["cells"][cell] = bench_shape(*shape, warmup, minibatches, device, cuda_graph=graph)
    if "rnn" in cells:  # the ceiling, the trials and the sweep are the tanh RNN's
        shape = (text.corpus, V, batch_size, num_steps, hiddens["rnn"])
        report.update(bench_ceiling(*shape, warmup, minibatches, device))
        if trials:
            report.update(bench_trials(*shape, trials, warmup, minibatches, device))
    if sweep:
        # Each CPU cell costs seconds per minibatch at batch 512 x hidden 1024: keep it short there.
        sweep_warmup, sweep_timed = (5, minibatches) if device.type == "cuda" else (1, 3)
        report["sweep"] = [
            bench_shape(text.corpus, V, "rnn", b, num_steps, h, sweep_warmup, sweep_timed, device, graph)
            for b, h in itertools.product(SWEEP_BATCHES, SWEEP_HIDDENS)
        ]
    report["peak_rss_mb"] = peak_rss_mb()
    return report


def format_cell(c: dict, unit: str) -> list[str]:
    """One cell's table: a row per contender, then the scratch step's ratios."""
    s, nn_name = c["tokens_per_sec"], label("nn", c["cell"])
    lines = [
        f"{c['cell']}: batch {c['batch_size']} x steps {c['num_steps']} x hidden {c['num_hiddens']}",
        f"  {'contender':<10} {'tokens/s':>12} {'(all rounds)':>13} {unit:>16}",
    ]
    for name in CONTENDERS:
        lines.append(
            f"  {label(name, c['cell']):<10} {s[name]:>12,.0f} {c['tokens_per_sec_overall'][name]:>13,.0f} "
            f"{c['peak_memory_mb'][name]:>13,.0f} MB"
        )
    lines.append(
        f"  scratch / book: {c['ratio_scratch_book']:.2f}x   scratch / {nn_name}: {c['ratio_scratch_nn']:.2f}x"
    )
    return lines


def format_report(r: dict) -> str:
    unit = "max allocated" if r["device_type"] == "cuda" else "peak RSS so far"
    graph = "" if r["device_type"] != "cuda" else ("  CUDA graph" if r["cuda_graph"] else "  eager (no CUDA graph)")
    lines = [
        f"device: {r['device']}  torch {r['torch']}  text: {r['text']}{graph}"
        + ("  (offline fallback: The Time Machine is not on this machine)" if r["fallback_text"] else ""),
        f"{r['minibatches']} timed minibatches per contender after {r['warmup_minibatches']} warm-up, "
        "in interleaved rounds; tokens/s is the best round",
    ]
    for cell, c in r["cells"].items():
        lines += format_cell(c, unit)
        if cell == "rnn":
            ceiling = r["tokens_per_sec_ceiling"]
            lines.append(
                f"  scratch at {r['ceiling_share']:.0%} of the matmul-only ceiling ({ceiling['scratch']:,.0f} "
                f"against {ceiling['matmul_only']:,.0f} tokens/s: the step's matmuls alone, same shapes)"
            )
    lines.append(f"process peak RSS: {r['peak_rss_mb']:,.0f} MB")
    if "trials" in r:
        t = r["tokens_per_sec_trials"]
        lines.append(
            f"rnn, {r['trials']} trials: one after another {t['sequential']:,.0f} tokens/s, batched "
            f"{t['batched']:,.0f} tokens/s, batched / sequential: {r['ratio_batched_sequential']:.2f}x"
        )
    if "sweep" in r:
        lines.append("rnn sweep (tokens/s):")
        lines.append(
            f"{'batch':>6} {'hidden':>7} {'book':>12} {'scratch':>12} {'nn.RNN':>12} {'/book':>7} {'/nn.RNN':>8}"
        )
        for c in r["sweep"]:
            t = c["tokens_per_sec"]
            lines.append(
                f"{c['batch_size']:>6} {c['num_hiddens']:>7} {t['book']:>12,.0f} {t['scratch']:>12,.0f} "
                f"{t['nn']:>12,.0f} {c['ratio_scratch_book']:>6.2f}x {c['ratio_scratch_nn']:>7.2f}x"
            )
    return "\n".join(lines)
