"""The concise model of D2L 8.6 (`torch.nn.RNN` + `Linear`) behind the scratch model's contract."""

import pytest
import torch
from torch.nn import functional as F

from charrnn.batches import SeqDataLoader
from charrnn.generate import generate, predict
from charrnn.models import ConciseModel, ModelConfig, make_model
from charrnn.train import TrainConfig, build_model, train

V, H = 28, 32
KEYS = ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0", "linear.weight", "linear.bias"]


def concise(seed=0, hidden=H):
    return make_model(ModelConfig(V, hidden, "concise"), generator=torch.Generator().manual_seed(seed))


def test_shapes_and_checkpoint_keys():
    model = concise()
    assert isinstance(model, ConciseModel) and list(model.state_dict()) == KEYS
    assert model.rnn.weight_ih_l0.shape == (H, V) and model.linear.weight.shape == (V, H)
    state = model.begin_state(4, "cpu")
    assert isinstance(state, tuple) and len(state) == 1
    assert state[0].shape == (1, 4, H) and not state[0].any()
    X = torch.randint(0, V, (4, 7))  # (batch_size, num_steps)
    logits, (H_T,) = model(X, state)
    assert logits.shape == (7 * 4, V) and logits.dtype == torch.float32
    assert H_T.shape == (1, 4, H)


def test_forward_is_the_nn_rnn_formula_time_major():
    model = concise()
    X = torch.randint(0, V, (3, 5))
    H0 = torch.randn(1, 3, H) * 0.5
    logits, (H_T,) = model(X, (H0,))
    W_ih, W_hh, b_ih, b_hh, W, b = [p.detach() for p in model.parameters()]
    state, rows = H0[0], []
    for x in F.one_hot(X.T, V).float():  # (batch_size, vocab_size) per time step
        state = torch.tanh(x @ W_ih.T + b_ih + state @ W_hh.T + b_hh)
        rows.append(state @ W.T + b)
    torch.testing.assert_close(logits, torch.cat(rows), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(H_T[0], state, rtol=1e-5, atol=1e-6)


def test_init_is_torchs_default_reproducible_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = concise(seed=5)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(456)  # a different global RNG changes nothing
    b, c = concise(seed=5), concise(seed=6)
    for (name, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(p, q), name
        assert not torch.equal(p, r), name
        # torch's defaults here: nn.RNN draws all from U(-1/sqrt(H), 1/sqrt(H)); Linear(H, V) too (fan_in H)
        bound = 1 / H**0.5
        assert bound * 0.8 < p.abs().max() <= bound, name


def test_unknown_kind_is_refused_naming_model():
    with pytest.raises(ValueError, match="model must be one of scratch, concise"):
        make_model(ModelConfig(V, H, "lstm"))


def test_training_lowers_the_perplexity_and_is_deterministic(recipe_corpus):
    config = TrainConfig(num_epochs=5, num_hiddens=64, model="concise", device="cpu", predict_every=100)
    first = train(recipe_corpus.corpus, recipe_corpus.vocab, config)
    ppl = [s.perplexity for s in first.history]
    assert isinstance(first.model, ConciseModel) and first.model.config.num_hiddens == 64
    assert ppl[-1] < ppl[0] < len(recipe_corpus.vocab) + 1 and ppl[-1] < 18
    again = train(recipe_corpus.corpus, recipe_corpus.vocab, config)
    assert [s.loss for s in again.history] == [s.loss for s in first.history]


def test_state_reset_and_random_sampling_train_the_concise_model(recipe_corpus):
    for overrides in ({"state": "reset"}, {"sampling": "random"}):
        config = TrainConfig(num_epochs=2, num_hiddens=16, model="concise", device="cpu", **overrides)
        result = train(recipe_corpus.corpus, recipe_corpus.vocab, config)
        assert result.history[-1].perplexity < result.history[0].perplexity


def test_clipping_binds_on_the_concise_model(recipe_corpus):
    config = TrainConfig(num_epochs=1, num_hiddens=32, model="concise", clip=0.01, device="cpu")
    model = build_model(len(recipe_corpus.vocab), config)
    loader = SeqDataLoader(recipe_corpus.corpus, 32, 35, seed=0)
    stats = train(recipe_corpus.corpus, recipe_corpus.vocab, config, model=model, loader=loader).history[0]
    assert stats.clipped == 1.0 and stats.grad_norm > 0.01


def test_prediction_works(recipe_corpus):
    config = TrainConfig(num_epochs=3, num_hiddens=32, model="concise", device="cpu", predict_every=1)
    result = train(recipe_corpus.corpus, recipe_corpus.vocab, config)
    text = predict(result.model, recipe_corpus.vocab, "time traveller", 20)
    assert text.startswith("time traveller") and len(text) == len("time traveller") + 20
    assert result.history[0].sample.startswith("time traveller")
    sampled = [generate(result.model, recipe_corpus.vocab, "the", 30, temperature=1.0, seed=4).text for _ in range(2)]
    assert sampled[0] == sampled[1] and len(sampled[0]) == 33
