"""`python -m charrnn bench`'s rnn-only additions (charrnn.bench.batched): the matmul-only ceiling does exactly
the matmuls of the scratch rnn step, the batched step exactly K times those of one trial, and `--trials K` reports
both sides and their ratio (figures only: no timing thresholds on a shared machine)."""

import json
import math
import subprocess
import sys

import pytest
import torch
from support import ROOT
from torch.utils._python_dispatch import TorchDispatchMode

from charrnn.bench.batched import matmul_only_step, trial_configs
from charrnn.bench.contenders import scratch_step
from charrnn.step import Trainer
from charrnn.train import build_model
from charrnn.tune.batched_step import BatchedScratch, BatchedTrainer


class MatmulFlops(TorchDispatchMode):
    """Counts the FLOPs of every matmul dispatched (in place and out= forms too, which torch's own
    FlopCounterMode leaves out): 2 * m * k * n for each (m, k) @ (k, n), per batch item."""

    PACKETS = {"mm": 0, "addmm": 1, "addmm_": 1, "bmm": 0, "baddbmm": 1, "baddbmm_": 1}

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        first = self.PACKETS.get(func.overloadpacket.__name__)
        if first is not None:
            a, b = args[first], args[first + 1]
            self.flops += 2 * a.numel() * b.shape[-1]  # (batch, m, k) @ (batch, k, n)
        return func(*args, **(kwargs or {}))


def step_flops(step, *args) -> int:
    with MatmulFlops() as counter:
        step(*args)
    return counter.flops


def test_the_ceiling_times_exactly_the_matmuls_of_the_scratch_step():
    V, H, B, T = 28, 64, 32, 35
    X = torch.randint(0, V, (B, T))
    single = scratch_step("rnn", V, H, torch.device("cpu"))
    _, state = single(X, X, None)
    ours = step_flops(single, X, X, state)
    assert ours == step_flops(matmul_only_step(V, H, B, T, "cpu"), X, X, None)
    assert ours == 2 * B * H * (T * H + (T - 1) * H + 3 * T * V + T * H)  # recurrence, its backward, output, dW_hh


def test_the_batched_step_does_k_times_the_matmuls_of_one_and_no_more():
    V, H, group = 28, 48, trial_configs(4, 32, 35, 48)
    X = torch.randint(0, V, (len(group), 32, 35))
    model = BatchedScratch([build_model(V, c) for c in group])
    trainer = BatchedTrainer(model, [c.lr for c in group], [c.clip for c in group])
    single = Trainer(build_model(V, group[0]), group[0])
    batched = step_flops(trainer.step, X, X, model.begin_state(32, "cpu"))
    assert batched == len(group) * step_flops(single.step, X[0], X[0], (torch.zeros(32, H),))


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "charrnn", "bench", "--device", "cpu", "--cell", "rnn", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_bench_trials_reports_both_sides_the_ratio_and_the_ceiling():
    out = bench("--minibatches", "2", "--num-hiddens", "32", "--trials", "3", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["trials"] == 3 and report["trial_lrs"] == [0.5, 1.25, 2.0]
    figures = [report["ratio_batched_sequential"], report["ceiling_share"]]
    figures += [report["tokens_per_sec_trials"][side] for side in ("sequential", "batched")]
    figures += [report["tokens_per_sec_ceiling"][side] for side in ("scratch", "matmul_only")]
    for value in figures:
        assert isinstance(value, float) and math.isfinite(value) and value > 0, figures
    speed = report["tokens_per_sec_trials"]
    assert report["ratio_batched_sequential"] == pytest.approx(speed["batched"] / speed["sequential"])
    human = bench("--minibatches", "1", "--num-hiddens", "32", "--trials", "2")
    assert human.returncode == 0, human.stderr
    assert "of the matmul-only ceiling" in human.stdout and "rnn, 2 trials:" in human.stdout
    assert "batched / sequential:" in human.stdout


def test_without_trials_the_bench_has_the_ceiling_and_no_trial_figures():
    report = json.loads(bench("--minibatches", "1", "--num-hiddens", "32", "--json").stdout)
    assert report["ceiling_share"] > 0 and "ratio_batched_sequential" not in report


@pytest.mark.parametrize("value", ["0", "257", "x"])
def test_bench_refuses_a_bad_trials_count_in_one_line(value):
    out = bench("--trials", value)
    assert out.returncode == 2
    assert "--trials" in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_bench_refuses_more_trials_than_memory_holds_before_timing():
    out = bench("--num-hiddens", "8192", "--trials", "256", "--minibatches", "1")
    assert out.returncode == 2, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("python -m charrnn bench: error: --trials 256: 256 trials of --num-hiddens 8192"), last
    assert "book" not in out.stdout
