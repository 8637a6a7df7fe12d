"""`python -m charrnn bench` times three contenders per cell and reports positive figures (no timing
thresholds), and the book's loops it times compute what charrnn's scratch step computes."""

import json
import math
import os
import re
import subprocess
import sys

import pytest
import torch
from support import ROOT

from charrnn.bench.contenders import CONTENDERS, MAKERS
from charrnn.bench.timing import minibatches

TINY = ("--batch-size", "4", "--num-steps", "5")  # the default widths, on minibatches small enough for a test
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "charrnn", "bench", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )


def positive(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_bench_json_has_every_figure_per_cell_at_the_books_widths():
    out = bench("--device", "cpu", "--minibatches", "2", *TINY, "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["device_type"] == "cpu" and report["minibatches"] == 2 and report["cuda_graph"] is False
    assert list(report["cells"]) == ["rnn", "gru", "lstm"]  # --cell all is the default
    widths = {cell: c["num_hiddens"] for cell, c in report["cells"].items()}
    assert widths == {"rnn": 512, "gru": 256, "lstm": 256}  # chapter 8's recipe, chapter 9's runs
    for cell, c in report["cells"].items():
        assert (c["cell"], c["batch_size"], c["num_steps"]) == (cell, 4, 5)
        figures = [c["ratio_scratch_book"], c["ratio_scratch_nn"]]
        for key in ("tokens_per_sec", "tokens_per_sec_overall", "peak_memory_mb"):
            assert set(c[key]) == set(CONTENDERS), key
            figures += list(c[key].values())
        assert all(positive(v) for v in figures), (cell, figures)
        speed = c["tokens_per_sec"]
        assert c["ratio_scratch_book"] == pytest.approx(speed["scratch"] / speed["book"])
        assert c["ratio_scratch_nn"] == pytest.approx(speed["scratch"] / speed["nn"])
    assert positive(report["ceiling_share"]) and positive(report["peak_rss_mb"])  # the rnn's ceiling
    assert "sweep" not in report and "trials" not in report


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_gated_cell_prints_its_table_of_three_contenders(cell):
    out = bench("--device", "cpu", "--cell", cell, "--minibatches", "2", "--num-hiddens", "16", *TINY)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert f"{cell}: batch 4 x steps 5 x hidden 16" in lines
    assert not any(line.startswith(other + ":") for line in lines for other in {"rnn", "gru", "lstm"} - {cell})
    nn_name = f"nn.{cell.upper()}"
    rows = {}
    for line in lines:
        m = re.fullmatch(r"\s+(book|scratch|nn\.\w+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+) MB", line)
        if m:
            rows[m[1]] = float(m[2].replace(",", ""))
    assert set(rows) == {"book", "scratch", nn_name}, out.stdout
    assert all(math.isfinite(v) and v > 0 for v in rows.values()), rows
    assert "scratch / book:" in out.stdout and f"scratch / {nn_name}:" in out.stdout
    assert "ceiling" not in out.stdout  # the matmul ceiling is the rnn's


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_the_books_loop_computes_the_losses_of_the_scratch_step(recipe_corpus, cell, device):
    """Like with like: the book's loop the bench times and charrnn's scratch step (Trainer; on CUDA its graph,
    captured after 3 steps) draw the same init, and from the same weights and minibatches give the same loss
    at every minibatch. The weights are redrawn at N(0, 0.2^2), biases too, because at the book's N(0, 0.01^2)
    the gates sit near 0.5 and the state near 0 for many minibatches, where a GRU with its reset gate after
    W_hh, or an LSTM without tanh(C), gives the same losses within 1e-6."""
    V, H, device = len(recipe_corpus.vocab), 48, torch.device(device)
    steps = {name: MAKERS[name](cell, V, H, device) for name in ("book", "scratch")}
    book, ours = steps["book"].params, steps["scratch"].params
    assert len(book) == len(ours) and all(torch.equal(p, q) for p, q in zip(book, ours, strict=True))
    draw = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p, q in zip(book, ours, strict=True):
            p.copy_(torch.randn(p.shape, generator=draw) * 0.2)
            q.copy_(p)
    losses = {}
    for name, step in steps.items():
        batches, state, losses[name] = minibatches(recipe_corpus.corpus, 32, 35, device), None, []
        for _ in range(6):
            X, Y = next(batches)
            loss, state = step(X, Y, state)
            losses[name].append(float(loss))
    assert losses["book"][-1] < losses["book"][0] - 0.2, losses  # it trains: the updates are compared too
    for i, (a, b) in enumerate(zip(losses["scratch"], losses["book"], strict=True)):
        assert abs(a - b) / b < 1e-5, f"minibatch {i}: scratch {a} vs book {b}"


def test_bad_values_exit_non_zero_naming_the_flag():
    for args, flag in (
        (["--minibatches", "0"], "--minibatches"),
        (["--batch-size", "x"], "--batch-size"),
        (["--num-hiddens", "99999"], "--num-hiddens"),
        (["--device", "tpu"], "--device"),
        (["--cell", "tanh"], "--cell"),
        (["--cell", "gru", "--trials", "2"], "--trials"),
        (["--cell", "lstm", "--sweep"], "--sweep"),
    ):
        out = bench(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert flag in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert out.stdout == "", args  # refused before any timing


def test_without_the_time_machine_it_times_the_fallback_text_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path))
    out = bench("--device", "cpu", "--cell", "rnn", "--minibatches", "1", "--num-hiddens", "64", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["fallback_text"] is True
    assert "fallback" in out.stderr
