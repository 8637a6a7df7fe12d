"""Checkpoints: plain dicts, weights_only loading, identical logits after a round trip."""

import io
import os
import pickle

import pytest
import torch

from charrnn.generate import predict
from charrnn.models import ModelConfig, ScratchModel
from charrnn.runs.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from charrnn.train import TrainConfig
from charrnn.vocab import Vocab

VOCAB = Vocab("the time traveller for so it will be convenient")


def _model():
    m = ScratchModel(ModelConfig(len(VOCAB), 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        m.W_hh.normal_(0, 0.3)
    return m


def test_round_trip_gives_identical_logits_and_text(tmp_path):
    model = _model()
    path = save_checkpoint(
        tmp_path / "m.pt", model, VOCAB, TrainConfig(num_hiddens=24), {"name": "x"}, [{"epoch": 1, "perplexity": 9.0}]
    )
    loaded, vocab, ckpt = load_checkpoint(path)
    X = torch.tensor([VOCAB.encode("time travel")])
    a, _ = model(X, model.begin_state(1, "cpu"))
    b, _ = loaded(X, loaded.begin_state(1, "cpu"))
    assert torch.equal(a, b)
    assert vocab.idx_to_token == VOCAB.idx_to_token
    assert predict(loaded, vocab, "time", 40) == predict(model, VOCAB, "time", 40)
    assert ckpt["train_config"]["num_hiddens"] == 24 and ckpt["history"][0]["epoch"] == 1
    assert os.listdir(tmp_path) == ["m.pt"]  # the temporary file was renamed, not left behind


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch /tmp/charrnn-pwned",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = "/tmp/charrnn-pwned"
    if os.path.exists(marker):
        os.unlink(marker)
    path = tmp_path / "evil.pt"
    torch.save({"format": "charrnn-checkpoint-v1", "payload": _RunsCode()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not os.path.exists(marker)
    plain = tmp_path / "evil.pkl"
    plain.write_bytes(pickle.dumps(_RunsCode()))
    with pytest.raises(CheckpointError):
        load_checkpoint(plain)
    assert not os.path.exists(marker)


def test_truncated_random_and_foreign_files_are_refused(tmp_path):
    good = save_checkpoint(tmp_path / "m.pt", _model(), VOCAB)
    data = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.pt").write_bytes(os.urandom(4096))
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    for name, needle in [("cut.pt", "readable"), ("noise.pt", "checkpoint"), ("other.pt", "not a charrnn checkpoint")]:
        with pytest.raises(CheckpointError, match=needle):
            load_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match="No checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_vocab_and_shape_mismatch_is_refused(tmp_path):
    buf = io.BytesIO()
    ckpt = torch.load(save_checkpoint(tmp_path / "m.pt", _model(), VOCAB), weights_only=True)
    ckpt["vocab"] = ckpt["vocab"][:-1]
    torch.save(ckpt, buf)
    buf.seek(0)
    with pytest.raises(CheckpointError, match="vocab"):
        load_checkpoint(buf)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_weights_saved_in_another_float_type_load_as_float32(tmp_path, dtype):
    model = _model()
    ckpt = torch.load(save_checkpoint(tmp_path / "m.pt", model, VOCAB), weights_only=True)
    ckpt["state_dict"] = {k: v.to(dtype) for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, tmp_path / "other.pt")
    loaded, _, _ = load_checkpoint(tmp_path / "other.pt")
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in loaded.parameters())
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, ckpt["state_dict"][key].float()), key
