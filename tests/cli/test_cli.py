"""`python -m charrnn` as a user runs it, in a subprocess."""

import json
import os
import re
import subprocess
import sys

import pytest

from charrnn.runs.store import RunStore


def charrnn(*args, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "charrnn", *args], capture_output=True, text=True, env=os.environ.copy(), timeout=300
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_info_json_reports_the_books_facts(time_machine_path):
    info = json.loads(charrnn("info", "--json").stdout)
    assert info["corpus_length"] == 10000 and info["text_length"] == 170580 and info["num_lines"] == 3221
    assert info["vocab_size"] == 28
    assert info["idx_to_token"] == ["<unk>", " ", *"etainoshrdlmucfwgypbvkxzjq"]
    assert info["num_batches"] == 8
    assert info["x_shape"] == [32, 35] and info["one_hot_shape"] == [35, 32, 28]
    assert info["output_shape"] == [1120, 28] and info["state_shape"] == [32, 512]


def test_info_whole_corpus_random_sampling(time_machine_path):
    info = json.loads(
        charrnn("info", "--json", "--max-tokens", "0", "--sampling", "random", "--val-tokens", "0").stdout
    )
    assert info["corpus_length"] == 170580 and info["val_range"] is None and info["val_length"] == 0
    assert info["num_batches"] in {(170580 - offset - 1) // 35 // 32 for offset in range(35)}
    # by default the last 10% of the whole text is held out, and the minibatches come from the rest
    info = json.loads(charrnn("info", "--json", "--max-tokens", "0", "--sampling", "random").stdout)
    assert info["val_range"] == [170580 - 17058, 170580] and info["val_length"] == 17058
    assert info["train_length"] == 170580 - 17058
    assert info["num_batches"] in {(170580 - 17058 - offset - 1) // 35 // 32 for offset in range(35)}


def test_info_names_the_recipes_held_out_slice(time_machine_path):
    info = json.loads(charrnn("info", "--json").stdout)
    assert info["train_range"] == [0, 10000] and info["val_range"] == [10000, 12000] and info["val_length"] == 2000
    assert "held-out: chars 10,000..11,999 of the text (2,000)" in charrnn("info").stdout


def test_train_save_generate(time_machine_path, tmp_path):
    ckpt = tmp_path / "run.pt"
    out = charrnn("train", "--epochs", "10", "--num-hiddens", "64", "--save", str(ckpt), "--json").stdout
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e["epoch"] for e in lines[:-1]] == list(range(1, 11))
    assert lines[9]["sample"].startswith("time traveller") and len(lines[9]["sample"]) == 14 + 50
    final = lines[-1]
    keys = {"run_id", "status", "reason", "perplexity", "tokens_per_sec", "device", "samples", "checkpoint"}
    assert set(final) == keys | {"val_perplexity", "best_val_perplexity", "best_val_epoch"}
    held_out = [e["val_perplexity"] for e in lines[:-1] if e["val_perplexity"] is not None]
    assert len(held_out) == 1 and final["val_perplexity"] == held_out[-1] == final["best_val_perplexity"]
    assert final["best_val_epoch"] == 10
    assert final["status"] == "finished"
    assert final["perplexity"] == lines[-2]["perplexity"] and final["device"] == "cpu"
    assert final["checkpoint"] == str(ckpt) and ckpt.exists()
    gen = json.loads(charrnn("generate", "--checkpoint", str(ckpt), "--prefix", "time traveller", "--json").stdout)
    assert gen["text"] == final["samples"]["time traveller"]  # greedy: the checkpoint reproduces the model
    runs = json.loads(charrnn("runs", "--json").stdout)
    run = next(r for r in runs if r["id"] == final["run_id"])
    assert run["status"] == "finished" and run["epochs"] == 10 and run["config"]["num_hiddens"] == 64
    from_store = json.loads(charrnn("generate", "--run", final["run_id"], "--json").stdout)
    assert from_store["text"] == gen["text"]
    sampled = charrnn(
        "generate", "--checkpoint", str(ckpt), "--temperature", "1", "--top-k", "5", "--seed", "1", "--num-preds", "30"
    ).stdout.strip()
    assert sampled.startswith("time traveller") and len(sampled) == 14 + 30


def test_train_human_output_has_the_books_summary_line(time_machine_path):
    out = charrnn("train", "--epochs", "2", "--num-hiddens", "32").stdout.splitlines()
    assert out[-5].startswith("perplexity ") and out[-5].endswith("tokens/sec on cpu")
    assert out[-4].startswith("time traveller") and out[-3].startswith("traveller")
    assert re.fullmatch(r"held-out perplexity [\d.]+ \(best [\d.]+ at epoch 2\)", out[-2]), out[-2]
    assert out[-1].startswith("run ") and "recorded in" in out[-1]
    name = RunStore().run(out[-1].split()[1])["name"]  # named as the app names runs: what it is, and when
    assert re.fullmatch(r"rnn-32 lr1 \d\d:\d\d", name), name


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "--lr", "-1"], "--lr"),
        (["train", "--batch-size", "0"], "--batch-size"),
        (["train", "--epochs", "many"], "--epochs"),
        (["train", "--sampling", "shuffle"], "--sampling"),
        (["train", "--device", "tpu"], "--device"),
        (["train", "--num-hiddens", "60000", "--epochs", "1"], "--num-hiddens"),
        (["train", "--num-hiddens", "8000", "--batch-size", "100000", "--epochs", "1"], "lower --num-hiddens"),
        (["info", "--mode", "fancy"], "--mode"),
        (["info", "--corpus", "/no/such/file.txt"], "No text file"),
        (["generate"], "--checkpoint"),
        (["generate", "--run", "nope"], "no run with id"),
        (["train", "--resume", "nope"], "no run with id"),
        (["generate", "--checkpoint", "/no/such.pt"], "No checkpoint"),
        (["generate", "--checkpoint", "x.pt", "--temperature", "-1"], "--temperature"),
        (["bogus"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_non_zero_with_one_line(args, needle):
    proc = charrnn(*args, check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_import_does_not_pull_in_streamlit():
    code = "import sys, charrnn, charrnn.cli; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize(
    "flags",
    [
        ["--cell", "gru"],
        ["--cell", "lstm", "--num-layers", "2", "--dropout", "0.2"],
        ["--model", "concise", "--cell", "gru"],
    ],
)
def test_train_json_reports_held_out_perplexity_for_every_cell(time_machine_path, tmp_path, flags):
    """The closing figure is the studio's one definition on the saved model, whatever its cell, depth or dropout."""
    from charrnn.data import load_corpus, split_heldout
    from charrnn.evaluate import heldout_perplexity
    from charrnn.runs.checkpoint import load_checkpoint

    ckpt = tmp_path / "run.pt"
    args = ["train", "--epochs", "3", "--num-hiddens", "32", "--save", str(ckpt), "--json", "--device", "cpu"]
    lines = [json.loads(line) for line in charrnn(*args, *flags).stdout.splitlines()]
    final = lines[-1]
    model, vocab, saved = load_checkpoint(ckpt)
    assert (saved["train_config"]["cell"], saved["train_config"]["num_layers"]) == (
        model.config.cell,
        model.config.num_layers,
    )
    assert model.config.cell == flags[flags.index("--cell") + 1]
    split = split_heldout(load_corpus("time_machine", "book", 10000), 2000)
    assert final["val_perplexity"] == pytest.approx(heldout_perplexity(model, split.val, "cpu"), rel=1e-6)
    assert 1 < final["val_perplexity"] < len(vocab)
