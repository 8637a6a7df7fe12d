"""Hostile checkpoints, table-driven: files that load safely but lie about themselves, files made to fill
memory, and files that are no checkpoint at all. Each is refused with ONE line naming the file and the
problem, before any model is built from it."""

import io
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from charrnn.models import ModelConfig, ScratchModel, make_model
from charrnn.runs.checkpoint import (
    MAX_CHECKPOINT_BYTES,
    CheckpointError,
    check_torch_version,
    load_checkpoint,
    make_checkpoint,
)
from charrnn.vocab import Vocab

ROOT = Path(__file__).resolve().parents[2]
VOCAB = Vocab("the time traveller for so it will be convenient")
H = 16


def good() -> dict:
    model = ScratchModel(ModelConfig(len(VOCAB), H), generator=torch.Generator().manual_seed(0))
    return make_checkpoint(model, VOCAB)


def edit(change):
    """A maker of checkpoint bytes: a real checkpoint dict after `change(ckpt)`, through torch.save."""

    def make(_tmp_path) -> bytes:
        ckpt = good()
        change(ckpt)
        buffer = io.BytesIO()
        torch.save(ckpt, buffer)
        return buffer.getvalue()

    return make


def put(where: str, key, value):
    """Set ckpt[where][key] (or ckpt[key] when where is "") to value."""
    return lambda c: (c[where] if where else c).__setitem__(key, value)


def set_item(key: str, index, value):
    return lambda c: c["state_dict"][key].__setitem__(index, value)


def state_dict_without(key: str):
    return lambda c: c["state_dict"].pop(key)


def deflated_zeros(tmp_path, n_bytes: int = 64 << 20) -> bytes:
    """A real checkpoint plus an n_bytes zeros tensor, its zip rewritten with DEFLATED entries: a small file
    that unpacks to more than n_bytes. Made in a child process, so this one never holds the tensor."""
    path = tmp_path / "inflated.pt"
    subprocess.run([sys.executable, "-c", MAKE_INFLATED, str(n_bytes), str(path)], cwd=ROOT, check=True)
    return path.read_bytes()


MAKE_INFLATED = """
import os, sys, zipfile, torch
from charrnn.runs.checkpoint import make_checkpoint
from charrnn.models import ModelConfig, ScratchModel, make_model
from charrnn.vocab import Vocab
n_bytes, out = int(sys.argv[1]), sys.argv[2]
vocab = Vocab("the time traveller")
ckpt = make_checkpoint(ScratchModel(ModelConfig(len(vocab), 16)), vocab)
ckpt["padding"] = torch.zeros(n_bytes // 4)
torch.save(ckpt, out + ".stored")
del ckpt
with zipfile.ZipFile(out + ".stored") as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
    for info in src.infolist():
        with src.open(info) as r, dst.open(info.filename, "w", force_zip64=True) as w:
            while chunk := r.read(1 << 20):
                w.write(chunk)
os.unlink(out + ".stored")
"""

# (case, maker of the file's bytes, words the message must hold)
CASES = [
    ("NaN weights", edit(set_item("W_hq", (0, 0), math.nan)), ["NaN or infinite", "W_hq"]),
    ("inf weights", edit(set_item("b_h", 3, -math.inf)), ["NaN or infinite", "b_h"]),
    ("repeated vocab token", edit(lambda c: c["vocab"].__setitem__(2, c["vocab"][1])), ["repeats the token"]),
    ("vocab of ints", edit(lambda c: c.__setitem__("vocab", list(range(len(VOCAB))))), ["vocab", "strings"]),
    ("vocab without <unk> first", edit(lambda c: c["vocab"].reverse()), ["vocab must start with '<unk>'"]),
    ("vocab shorter than vocab_size", edit(lambda c: c["vocab"].pop()), ["vocab has", f"vocab_size {len(VOCAB)}"]),
    ("vocab not a list", edit(put("", "vocab", "abc")), ["vocab must be a list"]),
    ("missing tensor", edit(state_dict_without("W_hh")), ["lacks W_hh"]),
    ("extra tensor", edit(put("state_dict", "W_extra", torch.zeros(3))), ["unexpected", "W_extra"]),
    ("wrong shape", edit(put("state_dict", "W_hh", torch.zeros(8, 8))), ["W_hh has shape (8, 8)", "num_hiddens 16"]),
    ("integer tensor", edit(lambda c: c["state_dict"].__setitem__("W_xh", c["state_dict"]["W_xh"].long())), ["int64"]),
    ("not a tensor", edit(put("state_dict", "b_q", [0.0] * len(VOCAB))), ["b_q is not a plain tensor"]),
    ("zero-stride view", edit(put("state_dict", "W_hh", torch.zeros(1).expand(H, H))), ["W_hh", "dense"]),
    ("state_dict not a dict", edit(put("", "state_dict", [1, 2])), ["state_dict"]),
    ("num_hiddens of 10**6", edit(put("model_config", "num_hiddens", 10**6)), ["shape", "num_hiddens 1000000"]),
    ("bool num_hiddens", edit(put("model_config", "num_hiddens", True)), ["num_hiddens must be a whole number"]),
    ("float vocab_size", edit(put("model_config", "vocab_size", 28.0)), ["vocab_size must be a whole number"]),
    ("unknown kind", edit(put("model_config", "kind", "transformer")), ["kind 'transformer'", "'scratch'"]),
    ("unknown config key", edit(put("model_config", "attention", 0.5)), ["unknown settings 'attention'"]),
    ("model_config not a dict", edit(put("", "model_config", None)), ["model_config is missing"]),
    ("inflated zip", deflated_zeros, ["refused", "unpack to", "never compresses"]),
    ("plain pickle", lambda _: pickle.dumps({"format": "charrnn-checkpoint-v1"}), ["refused", "run code"]),
    ("random bytes", lambda _: os.urandom(4096), ["refused", "not a checkpoint"]),
    ("truncated file", lambda tmp: edit(lambda c: None)(tmp)[:2000], ["not a readable checkpoint", "complete"]),
    ("empty file", lambda _: b"", ["is empty"]),
]


@pytest.mark.parametrize("case, make, needles", CASES, ids=[c[0] for c in CASES])
def test_a_lying_checkpoint_is_refused_in_one_line_naming_file_and_problem(tmp_path, case, make, needles):
    path = tmp_path / "x.pt"
    path.write_bytes(make(tmp_path))
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message, message
    assert all(n in message for n in needles), message


def test_an_upload_is_checked_the_same_way_and_can_be_read_after_a_check(tmp_path):
    upload = io.BytesIO(edit(set_item("W_hq", (0, 0), math.nan))(tmp_path))
    upload.name = "upload.pt"
    with pytest.raises(CheckpointError, match=r"^upload\.pt: its weights hold NaN"):
        load_checkpoint(upload)
    fine = io.BytesIO(edit(lambda c: None)(tmp_path))
    fine.seek(0, 2)  # a file object left at its end, as after an earlier read
    model, vocab, _ = load_checkpoint(fine)
    assert vocab.idx_to_token == VOCAB.idx_to_token and not model.training


LOAD_AND_MEASURE = """
import resource, sys
from charrnn.runs.checkpoint import CheckpointError, load_checkpoint
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_checkpoint(sys.argv[1])
    print("loaded")
except CheckpointError as e:
    print(e)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)  # ru_maxrss is in KiB on Linux
"""


def load_in_child(path: Path) -> tuple[str, int]:
    """(the refusal or "loaded", growth of peak memory in bytes) of load_checkpoint in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", LOAD_AND_MEASURE, str(path)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    message, growth = out.stdout.strip().rsplit("\n", 1)
    return message, int(growth)


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
def test_an_inflated_zip_is_refused_before_it_is_unpacked(tmp_path):
    tensor_bytes = 256 << 20
    path = tmp_path / "inflated.pt"
    path.write_bytes(deflated_zeros(tmp_path, tensor_bytes))
    assert path.stat().st_size < tensor_bytes // 100  # a small file...
    message, growth = load_in_child(path)
    assert "never compresses" in message, message
    assert growth < tensor_bytes // 16, f"peak memory grew {growth:,} bytes"  # ...that never got unpacked


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
def test_a_config_far_larger_than_its_tensors_allocates_nothing(tmp_path):
    path = tmp_path / "huge.pt"
    path.write_bytes(edit(put("model_config", "num_hiddens", 10**6))(tmp_path))  # W_hh alone: 4 TB
    message, growth = load_in_child(path)
    assert "num_hiddens 1000000" in message, message
    assert growth < 64 << 20, f"peak memory grew {growth:,} bytes"


def test_a_file_over_the_size_cap_is_refused_unread(tmp_path):
    path = tmp_path / "big.pt"
    with open(path, "wb") as f:
        f.truncate(MAX_CHECKPOINT_BYTES + 1)  # sparse: no disk used
    with pytest.raises(CheckpointError, match="is 1,073,741,825 bytes; a checkpoint is at most"):
        load_checkpoint(path)


@pytest.mark.parametrize("version", ["2.4.1", "2.5.1+cu121", "2.9.1", "1.13.0"])
def test_a_torch_with_a_known_unsafe_loader_is_refused(version):
    with pytest.raises(CheckpointError) as caught:
        check_torch_version(version)
    message = str(caught.value)
    assert f"torch {version}" in message and "CVE-2025-32434" in message and "upgrade torch" in message


@pytest.mark.parametrize("version", ["2.10.0", "2.13.0+cpu", "2.11.0+cu128", "3.0.0"])
def test_a_safe_torch_is_accepted(version):
    check_torch_version(version)


# ---- every model the studio trains: concise, gated and deep ------------------------------------------


def model_checkpoint(tmp_path, **fields) -> tuple[Path, dict]:
    config = ModelConfig(len(VOCAB), H, **fields)
    ckpt = make_checkpoint(make_model(config, torch.Generator().manual_seed(0)), VOCAB)
    path = tmp_path / "model.pt"
    torch.save(ckpt, path)
    return path, ckpt


SHAPES = [
    {"kind": "concise"},
    {"cell": "gru"},
    {"cell": "lstm", "num_layers": 2},
    {"kind": "concise", "cell": "lstm", "num_layers": 2, "dropout": 0.5},
    {"kind": "concise", "cell": "gru", "num_layers": 3},
]


@pytest.mark.parametrize("fields", SHAPES)
def test_every_model_loads_with_its_weights(tmp_path, fields):
    path, ckpt = model_checkpoint(tmp_path, **fields)
    model, vocab, _ = load_checkpoint(path)
    assert vocab.idx_to_token == VOCAB.idx_to_token
    assert (model.config.cell, model.config.num_layers) == (fields.get("cell", "rnn"), fields.get("num_layers", 1))
    for key, value in model.state_dict().items():
        assert torch.equal(value, ckpt["state_dict"][key]), key


LIES = [  # (what the config claims, a phrase of the refusal)
    ({"cell": "lstm"}, "lacks W_xi"),  # an rnn's weights under an lstm's config
    ({"num_layers": 2}, "lacks W_xh_l1"),  # one layer's weights, two claimed
    ({"kind": "concise"}, "lacks rnn.weight_ih_l0"),
    ({"cell": "cnn"}, "cell 'cnn'; this version knows 'rnn', 'gru', 'lstm'"),
    ({"num_layers": 0}, "num_layers must be a whole number from 1 to 8"),
    ({"num_layers": 10**12}, "num_layers must be a whole number from 1 to 8"),
    ({"num_layers": True}, "num_layers must be a whole number"),
    ({"dropout": 1.0}, "dropout must be a probability"),
    ({"dropout": "0.5"}, "dropout must be a probability"),
]


@pytest.mark.parametrize(("claim", "phrase"), LIES)
def test_a_config_that_lies_about_cell_or_depth_is_refused_in_one_line(tmp_path, claim, phrase):
    path, ckpt = model_checkpoint(tmp_path)  # a one-layer scratch rnn
    ckpt["model_config"].update(claim)
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert phrase in message and str(path) in message and "\n" not in message


def test_a_2_layer_lstm_whose_second_layer_is_the_wrong_width_is_refused(tmp_path):
    path, ckpt = model_checkpoint(tmp_path, cell="lstm", num_layers=2)
    ckpt["state_dict"]["W_hc_l1"] = torch.zeros(H, H + 1)
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"W_hc_l1 has shape \(16, 17\).*a 2-layer scratch lstm"):
        load_checkpoint(path)


def test_a_huge_claimed_width_is_refused_before_any_allocation(tmp_path):
    """A config claiming a 2-layer LSTM of a million units over 16-unit weights: refused by shape, with no
    allocation of what the claim would need (4 * 2 * 10^12 floats would fail long before the message)."""
    path, ckpt = model_checkpoint(tmp_path, cell="lstm", num_layers=2)
    ckpt["model_config"]["num_hiddens"] = 1_000_000
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="has shape"):
        load_checkpoint(path)


@pytest.mark.parametrize("kind", ["scratch", "concise"])
def test_a_checkpoint_from_before_chapter_9_loads_as_a_one_layer_rnn(tmp_path, kind):
    """Written before cells existed: its model_config has vocab_size, num_hiddens and kind only."""
    path, ckpt = model_checkpoint(tmp_path, kind=kind)
    ckpt["model_config"] = {"vocab_size": len(VOCAB), "num_hiddens": H, "kind": kind}
    torch.save(ckpt, path)
    model, _, _ = load_checkpoint(path)
    assert (model.config.cell, model.config.num_layers, model.config.dropout) == ("rnn", 1, 0.0)
    for key, value in model.state_dict().items():
        assert torch.equal(value, ckpt["state_dict"][key]), key
