"""Weight drop (DropConnect on W_hh, Merity et al. 2017) on the concise models: in training, each minibatch
runs torch's own RNN with each W_hh masked by one Bernoulli mask scaled by 1/(1-p), shared by every step;
in evaluation the weights are whole. The scratch models refuse it."""

import copy

import pytest
import torch
from torch.nn import functional as F

from charrnn.models import ModelConfig, make_model
from charrnn.runs.checkpoint import load_checkpoint, save_checkpoint
from charrnn.train import TrainConfig, build_model, train
from charrnn.vocab import Vocab

V, H = 28, 24


@pytest.mark.parametrize("cell, layers", [("lstm", 1), ("lstm", 2), ("gru", 1), ("rnn", 2)])
def test_training_is_torchs_rnn_with_each_w_hh_masked_once_per_minibatch(cell, layers):
    p = 0.4
    model = make_model(ModelConfig(V, H, "concise", cell, layers, 0.0, p), generator=torch.Generator().manual_seed(0))
    X = torch.randint(0, V, (3, 7))
    state = model.begin_state(3, "cpu")
    torch.manual_seed(5)
    logits, _ = model.train()(X, state)
    # The same draws by hand: one mask per W_hh, in the order torch lists its parameters, on a plain copy.
    plain = copy.deepcopy(model)
    torch.manual_seed(5)
    with torch.no_grad():
        for layer in range(layers):
            w = getattr(plain.rnn, f"weight_hh_l{layer}")
            mask = (F.dropout(torch.ones_like(w), p, True) > 0).float()
            assert 0.3 < 1 - mask.mean() < 0.5  # about p of the weights are dropped
            w.mul_(mask / (1 - p))
    plain.config = ModelConfig(V, H, "concise", cell, layers)  # no weight drop: torch's RNN as it is
    expected, _ = plain.eval()(X, state)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-6)


def test_dropped_weights_get_no_gradient_and_evaluation_keeps_them_all():
    config = ModelConfig(V, H, "concise", "lstm", 1, 0.0, 0.5)
    model = make_model(config, generator=torch.Generator().manual_seed(0))
    X, Y = torch.randint(0, V, (4, 6)), torch.randint(0, V, (4, 6))
    logits, _ = model.train()(X, model.begin_state(4, "cpu"))
    F.cross_entropy(logits, Y.T.reshape(-1)).backward()
    grad = model.rnn.weight_hh_l0.grad
    assert 0.3 < (grad == 0).float().mean() < 0.7  # the dropped half of W_hh learns nothing this minibatch
    whole = make_model(ModelConfig(V, H, "concise", "lstm"), generator=torch.Generator().manual_seed(0))
    state = model.begin_state(4, "cpu")
    torch.testing.assert_close(model.eval()(X, state)[0], whole.eval()(X, state)[0])


def test_the_scratch_model_refuses_it_naming_the_fix():
    with pytest.raises(ValueError, match="weight_drop works with the concise model only.*use model concise"):
        ModelConfig(V, H, "scratch", "lstm", 1, 0.0, 0.3).check()
    with pytest.raises(ValueError, match="weight_drop must be a probability from 0"):
        ModelConfig(V, H, "concise", "lstm", 1, 0.0, 1.0).check()


def test_a_run_with_weight_drop_trains_repeatably_and_its_checkpoint_says_so(recipe_corpus, tmp_path):
    config = TrainConfig(
        num_epochs=3,
        num_hiddens=H,
        model="concise",
        cell="lstm",
        weight_drop=0.3,
        optimizer="adam",
        lr=0.01,
        max_tokens=2000,
        device="cpu",
    )
    corpus = recipe_corpus.corpus[:2000]
    first, second = (train(corpus, recipe_corpus.vocab, config) for _ in range(2))
    assert [h.perplexity for h in first.history] == [h.perplexity for h in second.history]
    assert first.history[-1].perplexity < first.history[0].perplexity
    without = train(corpus, recipe_corpus.vocab, TrainConfig(**{**config.__dict__, "weight_drop": 0.0}))
    assert without.history[-1].perplexity != first.history[-1].perplexity  # the masks did something
    path = tmp_path / "wd.pt"
    save_checkpoint(path, first.model, recipe_corpus.vocab, config)
    model, _, ckpt = load_checkpoint(path)
    assert model.config.weight_drop == 0.3 and ckpt["model_config"]["weight_drop"] == 0.3


def test_a_checkpoint_from_before_weight_drop_loads_without_it(tmp_path):
    vocab = Vocab("the time traveller for so it will be convenient")
    model = build_model(len(vocab), TrainConfig(num_hiddens=H, model="concise", cell="gru", device="cpu"))
    path = tmp_path / "old.pt"
    save_checkpoint(path, model, vocab)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["model_config"]["weight_drop"]
    torch.save(ckpt, path)
    assert load_checkpoint(path)[0].config.weight_drop == 0.0
