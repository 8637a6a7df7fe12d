"""`python -m charrnn bench` runs all three contenders and reports positive figures (no timing thresholds)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "charrnn", "bench", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_bench_json_has_every_figure():
    out = bench("--device", "cpu", "--minibatches", "3", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    for key in (
        "device",
        "text",
        "batch_size",
        "num_steps",
        "num_hiddens",
        "minibatches",
        "tokens_per_sec",
        "tokens_per_sec_overall",
        "peak_memory_mb",
        "ratio_charrnn_book",
        "ratio_charrnn_nn_rnn",
        "peak_rss_mb",
    ):
        assert key in report, key
    assert report["device_type"] == "cpu"
    assert (report["batch_size"], report["num_steps"], report["num_hiddens"], report["minibatches"]) == (32, 35, 512, 3)
    figures = [report["ratio_charrnn_book"], report["ratio_charrnn_nn_rnn"], report["peak_rss_mb"]]
    for name in ("book", "charrnn", "nn_rnn"):
        figures += [
            report["tokens_per_sec"][name],
            report["tokens_per_sec_overall"][name],
            report["peak_memory_mb"][name],
        ]
    for value in figures:
        assert isinstance(value, float) and math.isfinite(value) and value > 0, figures
    assert "sweep" not in report


def test_bench_human_output_names_the_contenders():
    out = bench("--device", "cpu", "--minibatches", "1", "--num-hiddens", "64")
    assert out.returncode == 0, out.stderr
    for word in ("book", "charrnn", "nn_rnn", "tokens/s", "charrnn / book", "charrnn / nn.RNN"):
        assert word in out.stdout


def test_bad_values_exit_non_zero_naming_the_flag():
    for args, flag in (
        (["--minibatches", "0"], "--minibatches"),
        (["--batch-size", "x"], "--batch-size"),
        (["--num-hiddens", "99999"], "--num-hiddens"),
        (["--device", "tpu"], "--device"),
    ):
        out = bench(*args)
        assert out.returncode != 0
        assert flag in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_without_the_time_machine_it_times_the_fallback_text_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path))
    out = bench("--device", "cpu", "--minibatches", "1", "--num-hiddens", "64", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["fallback_text"] is True
    assert "fallback" in out.stderr
