"""charrnn.inside against the book's formulation written out here: explicit one-hot inputs, per-step
matmuls, autograd (D2L 8.5); the gated cells and deep models (9.1-9.3) against the models' own forward
and torch's modules; and its text features and unit pickers on hand-made cases."""

import pytest
import torch
from torch.nn import functional as F

from charrnn.batches import SeqDataLoader
from charrnn.inside import (
    FEATURES,
    LOSSES,
    MAX_TEXT,
    correlations,
    feature_values,
    grad_norms_through_time,
    hidden_states,
    minibatch_with_state,
    parse_units,
    shown_for,
    top_correlated,
    top_variance,
)
from charrnn.models import CELLS, KINDS, ModelConfig, make_model
from charrnn.vocab import Vocab

TEXT = "the time traveller for so it will be convenient to speak of him was expounding a recondite matter "
VOCAB = Vocab(TEXT)
HIDDEN = 24
# Weight scales that push the states far from 0 (|H| up to ~0.9) while the recurrence stays stable: past
# them the map is chaotic, and float rounding alone (the fast model adds b_h in another order) grows
# to 2 over a few hundred steps. The gated cells take twice these.
LARGE = {"scratch": 20.0, "concise": 2.0}
# Every cell of either kind, one and two layers deep.
MODELS = [(kind, cell, layers) for kind in KINDS for cell in CELLS for layers in (1, 2)]


def model_of(kind: str, large: bool = False, cell: str = "rnn", layers: int = 1, dropout: float = 0.0):
    """A fresh model; `large` multiplies every weight by LARGE (twice that in a gated cell) so that the
    states and gradients are not all tiny."""
    scale = LARGE[kind] * (1 if cell == "rnn" else 2) if large else 1.0
    config = ModelConfig(len(VOCAB), HIDDEN, kind, cell, layers, dropout)
    model = make_model(config, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model


def top_layer(model, state: tuple) -> tuple:
    """The top layer's (H,) or (H, C) out of a state of the model's own shape."""
    if model.config.kind == "concise":  # each (num_layers, batch_size, num_hiddens)
        return tuple(s[-1] for s in state)
    return state[len(state) - len(state) // model.config.num_layers :]  # a flat tuple, bottom layer first


def book_params(model):
    """(W_xh, W_hh, b_h, W_hq, b_q) as the book orients them, read from the model's own tensors."""
    if model.config.kind == "scratch":
        return [p.detach().clone() for p in (model.W_xh, model.W_hh, model.b_h, model.W_hq, model.b_q)]
    r, lin = model.rnn, model.linear
    b_h = r.bias_ih_l0 + r.bias_hh_l0
    return [t.detach().clone() for t in (r.weight_ih_l0.t(), r.weight_hh_l0.t(), b_h, lin.weight.t(), lin.bias)]


def book_rnn(X_onehot, H, params):
    """The book's `rnn`: inputs (num_steps, batch_size, vocab_size), one step at a time; returns the
    time-major outputs and every step's H (each keeping its grad)."""
    W_xh, W_hh, b_h, W_hq, b_q = params
    outputs, states = [], []
    for X in X_onehot:
        H = torch.tanh(torch.mm(X, W_xh) + torch.mm(H, W_hh) + b_h)
        if H.requires_grad:
            H.retain_grad()
        states.append(H)
        outputs.append(torch.mm(H, W_hq) + b_q)
    return torch.cat(outputs, dim=0), states


def one_hot(text: str):  # (steps, 1, vocab)
    return F.one_hot(torch.tensor([VOCAB.encode(text)]).t(), len(VOCAB)).float()


# ---- activations ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("large", [False, True])
def test_rnn_hidden_states_are_the_books_recurrence_from_a_zero_state(kind, large):
    """The book's 8.5 on a text that ends in chars outside the vocab, read as `<unk>` (as Generate does)."""
    model = model_of(kind, large)
    text = TEXT * 3 + "the QZ time"
    X = one_hot(text)
    assert X[-7, 0, 0] == 1 and X[-6, 0, 0] == 1  # Q and Z are index 0, <unk>
    with torch.no_grad():
        _, oracle = book_rnn(X, torch.zeros(1, HIDDEN), book_params(model))
    got = hidden_states(model, VOCAB, text)
    assert got.shape == (len(text), HIDDEN)
    torch.testing.assert_close(got, torch.cat(oracle), rtol=1e-5, atol=1e-6)
    if large:  # states far from 0: the comparison bites
        assert got.abs().max() > 0.5


@pytest.mark.parametrize("kind, cell, layers", MODELS)
def test_the_top_layer_shown_is_what_forward_feeds_its_head(kind, cell, layers):
    """Its H through the head gives forward's logits; its last H (and C) are forward's final top state."""
    model = model_of(kind, True, cell, layers)
    text = TEXT * 2
    H = hidden_states(model, VOCAB, text)  # (len(text), HIDDEN)
    with torch.no_grad():
        logits, state = model(torch.tensor([VOCAB.encode(text)]), model.begin_state(1, "cpu"))
        torch.testing.assert_close(model.head(H), logits, rtol=1e-5, atol=1e-5)
    assert H.abs().max() > 0.4  # far from 0: the comparison bites
    shown = [hidden_states(model, VOCAB, text, show)[-1] for show in ("H", "C")[: len(top_layer(model, state))]]
    for got, expected in zip(shown, top_layer(model, state), strict=True):
        torch.testing.assert_close(got, expected.reshape(-1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 2])
def test_concise_states_are_torchs_own_outputs(cell, layers):
    model = model_of("concise", True, cell, layers)
    with torch.no_grad():
        Y, _ = model.rnn(one_hot(TEXT))  # (steps, 1, HIDDEN): the top layer, from zeros
    torch.testing.assert_close(hidden_states(model, VOCAB, TEXT), Y[:, 0], rtol=1e-5, atol=1e-5)


SHOWN = {"rnn": ("H",), "gru": ("H", "Z", "R"), "lstm": ("H", "I", "F", "O", "C")}


@pytest.mark.parametrize("kind, cell, layers", [m for m in MODELS if m[1] != "rnn"])
def test_gates_lie_between_0_and_1_and_the_lstms_H_is_O_tanh_C(kind, cell, layers):
    model = model_of(kind, True, cell, layers)
    assert shown_for(model) == SHOWN[cell]
    got = {show: hidden_states(model, VOCAB, TEXT, show) for show in shown_for(model)}
    for gate in set(got) - {"H", "C"}:
        assert 0 < got[gate].min() and got[gate].max() < 1, gate
        assert got[gate].std() > 0.05, gate  # they open and shut over the text: not all 0.5
    if cell == "lstm":
        torch.testing.assert_close(got["H"], got["O"] * torch.tanh(got["C"]), rtol=1e-5, atol=1e-6)
        assert got["C"].abs().max() > 0.3
    with pytest.raises(ValueError, match=f"show must be one of {', '.join(SHOWN[cell])} for a {cell}"):
        hidden_states(model, VOCAB, TEXT, "F" if cell == "gru" else "Z")


@pytest.mark.parametrize(
    "text, needle", [("", "text is empty"), ("a" * (MAX_TEXT + 1), f"the limit is {MAX_TEXT:,}")], ids=["empty", "long"]
)
def test_bad_texts_are_refused_naming_the_limit(text, needle):
    with pytest.raises(ValueError, match=needle):
        hidden_states(model_of("scratch"), VOCAB, text)
    assert hidden_states(model_of("scratch"), VOCAB, "a" * MAX_TEXT).shape[0] == MAX_TEXT  # the limit itself is fine


# ---- gradients through time --------------------------------------------------------------------


INDICES = VOCAB.encode(TEXT * 6)


def minibatch(num_steps: int, k: int = 1):
    """The k-th sequential minibatch (batch 4) of TEXT repeated, as the iterators yield it."""
    return list(SeqDataLoader(INDICES, 4, num_steps, "sequential", seed=0))[k - 1]


def oracle_grad_norms(model, X, Y, H0, loss="mean"):
    """Autograd on the book's formulation: ||dL/dH_t|| with L the mean cross-entropy of the minibatch
    (the book's loss), or of its last step's predictions alone."""
    params = [p.requires_grad_() for p in book_params(model)]
    outputs, states = book_rnn(F.one_hot(X.T, len(VOCAB)).float(), H0, params)
    y = Y.T.reshape(-1)
    if loss == "last step":
        outputs, y = outputs[-X.shape[0] :], y[-X.shape[0] :]  # time-major: the last batch_size rows
    F.cross_entropy(outputs, y).backward()
    return [float(H.grad.norm()) for H in states]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("num_steps", [5, 35])
@pytest.mark.parametrize("large", [False, True])
@pytest.mark.parametrize("loss", LOSSES)
def test_rnn_grad_norms_match_autograd_on_the_books_formulation(kind, num_steps, large, loss):
    model = model_of(kind, large)
    X, Y = minibatch(num_steps)
    got = grad_norms_through_time(model, X, Y, loss=loss)
    assert len(got) == num_steps
    assert got == pytest.approx(oracle_grad_norms(model, X, Y, torch.zeros(4, HIDDEN), loss), rel=1e-4)
    assert got[-1] > 0
    if loss == "mean":  # every step has its own output in the loss; the last step's alone can underflow to 0
        assert min(got) > 0


@pytest.mark.parametrize("kind, cell, layers", MODELS)
@pytest.mark.parametrize("loss", LOSSES)
def test_grad_norms_of_every_cell_from_the_carried_state(kind, cell, layers, loss):
    """One finite norm per step; the last step's is (softmax - onehot) W_out / n on forward's own logits
    at step T (H_T reaches the loss through that output alone), n = T*B or, for the last step's loss, B."""
    model = model_of(kind, True, cell, layers)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    X, Y, state = minibatch_with_state(model, INDICES, 4, 10, 2)
    with torch.no_grad():
        _, carried = model(minibatch(10, 1)[0], model.begin_state(4, "cpu"))  # what training carries in
        logits, _ = model(X, state)
    assert [s.shape for s in state] == [s.shape for s in model.begin_state(4, "cpu")]
    assert all(torch.equal(a, b) for a, b in zip(state, carried, strict=True))
    got = grad_norms_through_time(model, X, Y, state, loss=loss)
    assert len(got) == 10 and all(0 < g < float("inf") for g in got)
    W_out = (model.W_hq.T if kind == "scratch" else model.linear.weight).detach()  # (vocab_size, num_hiddens)
    n = Y.numel() if loss == "mean" else Y.shape[0]
    dH_T = (torch.softmax(logits[-4:], -1) - F.one_hot(Y[:, -1], len(VOCAB))) / n @ W_out
    assert got[-1] == pytest.approx(float(dH_T.norm()), rel=1e-4)
    if (cell, layers) == ("rnn", 1):  # the book's RNN: every step against autograd on its formulation
        assert got == pytest.approx(oracle_grad_norms(model, X, Y, top_layer(model, state)[0], loss), rel=1e-4)
    assert got != pytest.approx(grad_norms_through_time(model, X, Y, loss=loss), rel=1e-3)  # the state matters
    # Nothing was changed on the model: same weights, no .grad left behind.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_dropout_does_not_draw_in_the_views_and_the_mode_is_kept():
    model = model_of("scratch", True, "lstm", 2, dropout=0.5)  # in training mode
    norms = [grad_norms_through_time(model, *minibatch_with_state(model, INDICES, 4, 10, 3)) for _ in range(2)]
    assert norms[0] == norms[1] and model.training
    torch.testing.assert_close(hidden_states(model, VOCAB, TEXT), hidden_states(model.eval(), VOCAB, TEXT))


def test_an_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="loss must be one of mean, last step"):
        grad_norms_through_time(model_of("scratch"), *minibatch(5), loss="sum")


# ---- features and units --------------------------------------------------------------------------

HAND = "ab cde f"
FEATURE_CASES = [
    ("inside a word", [0, 0, 0, 0, 1, 0, 0, 0]),  # only "d" has letters on both sides
    ("right after a space", [0, 0, 0, 1, 0, 0, 0, 1]),
    ("vowel", [1, 0, 0, 0, 0, 1, 0, 0]),
    ("position in the word", [1, 2, 0, 1, 2, 3, 0, 1]),
    ("space", [0, 0, 1, 0, 0, 0, 1, 0]),
]


def test_every_feature_has_a_case():
    assert sorted(FEATURES) == sorted(name for name, _ in FEATURE_CASES)


@pytest.mark.parametrize("name, expected", FEATURE_CASES, ids=[c[0] for c in FEATURE_CASES])
def test_feature_values_on_a_hand_made_text(name, expected):
    assert feature_values(HAND, name) == expected


@pytest.mark.parametrize("name, _", FEATURE_CASES, ids=[c[0] for c in FEATURE_CASES])
def test_correlations_are_known_for_units_built_from_the_feature(name, _):
    text = "the time traveller, for so it is convenient to speak of him! "
    v = torch.tensor(feature_values(text, name))
    noise = torch.sin(torch.arange(len(text)) * 1.7)  # varies, unrelated to the text
    states = torch.stack([v, -v, torch.full_like(v, 0.3), 2 * v + 5, noise], dim=1)  # (len(text), 5 units)
    r = correlations(states, v)
    assert r[:4].tolist() == pytest.approx([1.0, -1.0, 0.0, 1.0], abs=1e-9)
    assert abs(float(r[4])) < 0.5
    assert sorted(top_correlated(r, 3)) == [0, 1, 3]  # the |r| = 1 units (their order is float rounding)
    assert not torch.isnan(r).any()


def test_a_constant_feature_correlates_with_nothing():
    states = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    assert correlations(states, [1.0] * 10).tolist() == [0.0] * 4
    with pytest.raises(ValueError, match="one per character"):
        correlations(states, [1.0] * 9)


def test_top_variance_orders_units_by_how_much_they_vary():
    t = torch.linspace(-1, 1, 50)
    states = torch.stack([0.1 * t, 0.9 * t, torch.zeros(50), 0.5 * t], dim=1)
    assert top_variance(states, 3) == [1, 3, 0]
    assert top_variance(states, 10) == [1, 3, 0, 2]


UNIT_SPECS = [("3, 17, 40-42", [3, 17, 40, 41, 42]), ("5,5, 4-6", [5, 4, 6]), (" 0 ", [0])]
BAD_UNIT_SPECS = [  # (spec, num_hiddens, what the message must say)
    ("", 64, "units is empty"),
    ("3, x", 64, "'x' is not a unit number"),
    ("64", 64, "outside 0-63"),
    ("9-3", 64, "outside 0-63"),
    ("-1", 64, "not a unit number"),
    ("0-64", 100, "the limit is 64"),
]


@pytest.mark.parametrize("spec, expected", UNIT_SPECS)
def test_units_by_number(spec, expected):
    assert parse_units(spec, 64) == expected


@pytest.mark.parametrize("spec, num_hiddens, needle", BAD_UNIT_SPECS)
def test_bad_unit_numbers_are_refused_saying_how_to_write_them(spec, num_hiddens, needle):
    with pytest.raises(ValueError, match=needle):
        parse_units(spec, num_hiddens)
