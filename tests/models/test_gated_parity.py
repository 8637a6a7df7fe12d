"""The fast scratch GRU and LSTM (any depth) against the book's chapter 9 code, written out plainly here:
explicit one-hot inputs, a Python loop of per-step matmuls with the book's equations (9.1.2, 9.2.2), autograd,
the book's clipping and SGD. And the scratch LSTM against torch's nn.LSTM, which is the same function."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from charrnn.batches import SeqDataLoader
from charrnn.models import ConciseModel, ModelConfig, ScratchModel
from charrnn.step import Trainer
from charrnn.train import TrainConfig

HIDDEN = 48
STEPS = 40  # minibatches: 5 epochs of the book's 8


def gru_layer(x, H, W_xz, W_hz, b_z, W_xr, W_hr, b_r, W_xh, W_hh, b_h):
    """D2L 9.1's `gru` for one step: reset gate applied to H before W_hh."""
    Z = torch.sigmoid((x @ W_xz) + (H @ W_hz) + b_z)
    R = torch.sigmoid((x @ W_xr) + (H @ W_hr) + b_r)
    H_tilda = torch.tanh((x @ W_xh) + ((R * H) @ W_hh) + b_h)
    return (Z * H + (1 - Z) * H_tilda,)


def lstm_layer(x, H, C, W_xi, W_hi, b_i, W_xf, W_hf, b_f, W_xo, W_ho, b_o, W_xc, W_hc, b_c):
    """D2L 9.2's `lstm` for one step."""
    I = torch.sigmoid((x @ W_xi) + (H @ W_hi) + b_i)
    F_ = torch.sigmoid((x @ W_xf) + (H @ W_hf) + b_f)
    O = torch.sigmoid((x @ W_xo) + (H @ W_ho) + b_o)
    C_tilda = torch.tanh((x @ W_xc) + (H @ W_hc) + b_c)
    C = F_ * C + I * C_tilda
    return O * torch.tanh(C), C


LAYERS = {"gru": (gru_layer, 9, 1), "lstm": (lstm_layer, 12, 2)}  # step, parameters per layer, state parts


def book_forward(cell, inputs, state, params, num_layers):
    """The book's model function, step by step; layer l reads layer l-1's H (9.3). `state` is flat per layer."""
    step, n, k = LAYERS[cell]
    W_hq, b_q = params[-2:]
    state, outputs = list(state), []
    for x in inputs:  # inputs: (num_steps, batch_size, vocab_size), one-hot
        for layer in range(num_layers):
            new = step(x, *state[k * layer : k * (layer + 1)], *params[n * layer : n * (layer + 1)])
            state[k * layer : k * (layer + 1)] = new
            x = new[0]
        outputs.append(x @ W_hq + b_q)
    return torch.cat(outputs, dim=0), tuple(state)


def grad_clipping(params, theta):
    norm = torch.sqrt(sum(torch.sum(p.grad**2) for p in params))
    if norm > theta:
        for p in params:
            p.grad[:] *= theta / norm


def book_training(cell, params, loader, vocab_size, num_layers, lr, theta):
    """train_epoch_ch8 for STEPS minibatches, state carried and detached; every minibatch's loss."""
    losses, state = [], None
    k = LAYERS[cell][2]
    while len(losses) < STEPS:
        for X, Y in loader:
            if state is None:
                state = tuple(torch.zeros(X.shape[0], HIDDEN) for _ in range(k * num_layers))
            state = tuple(s.detach() for s in state)
            y_hat, state = book_forward(cell, F.one_hot(X.T, vocab_size).float(), state, params, num_layers)
            loss = nn.CrossEntropyLoss()(y_hat, Y.T.reshape(-1)).mean()
            loss.backward()
            grad_clipping(params, theta)
            with torch.no_grad():
                for p in params:
                    p -= lr * p.grad
                    p.grad.zero_()
            losses.append(loss.item())
        state = None  # a new epoch: the book's train_epoch_ch8 starts from a fresh state
    return losses


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_init_draws_the_books_get_params(cell):
    """The book's get_params for 9.1 / 9.2 after torch.manual_seed: same numbers, same names, same order."""
    V, names = 28, {"gru": "zrh", "lstm": "ifoc"}[cell]
    torch.manual_seed(11)
    book = []
    for _gate in names:  # three() / the LSTM's per-gate triple: normal (V, H), normal (H, H), zeros (H)
        book += [torch.randn(V, HIDDEN) * 0.01, torch.randn(HIDDEN, HIDDEN) * 0.01, torch.zeros(HIDDEN)]
    book += [torch.randn(HIDDEN, V) * 0.01, torch.zeros(V)]
    ours = ScratchModel(ModelConfig(V, HIDDEN, cell=cell), generator=torch.Generator().manual_seed(11))
    expected = [f"{w}{g}" for g in names for w in ("W_x", "W_h", "b_")] + ["W_hq", "b_q"]
    assert [n for n, _ in ours.named_parameters()] == expected
    for p, (name, q) in zip(book, ours.named_parameters(), strict=True):
        assert torch.equal(p, q.detach()), name


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_forty_minibatches_of_training_equal_the_books_loop(recipe_corpus, cell, num_layers):
    """Trainer.step (what train runs: the fast path, clipping, SGD) against the book's loop, from the same init and
    data: every minibatch's loss within 1e-5 (relative) and every parameter within 1e-5 after training."""
    V, lr, theta, seed = len(recipe_corpus.vocab), 1.0, 0.1, 3
    config = ModelConfig(V, HIDDEN, cell=cell, num_layers=num_layers)
    model = ScratchModel(config, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():  # non-zero biases, so that their placement is tested too
        for name, p in model.named_parameters():
            if name.startswith("b_"):
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(name)))
    params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    book = book_training(cell, params, SeqDataLoader(recipe_corpus.corpus, 32, 35, seed=seed), V, num_layers, lr, theta)

    trainer = Trainer(model, TrainConfig(lr=lr, clip=theta, num_hiddens=HIDDEN, cell=cell, num_layers=num_layers))
    ours, clipped, state = [], 0, None
    loader = SeqDataLoader(recipe_corpus.corpus, 32, 35, seed=seed)
    while len(ours) < STEPS:
        for X, Y in loader:
            state = model.begin_state(X.shape[0], "cpu") if state is None else tuple(s.detach() for s in state)
            loss, _, was_clipped, state = trainer.step(X, Y, state)
            ours.append(loss.item())
            clipped += int(was_clipped)
        state = None
    assert len(ours) == len(book) == STEPS
    assert 0 < clipped < STEPS, "theta should bind at some minibatches, not all, so both paths are exercised"
    assert ours[-1] < ours[0] - 0.3, "the model should learn over 40 minibatches"
    for i, (a, b) in enumerate(zip(ours, book, strict=True)):
        assert abs(a - b) / b < 1e-5, f"minibatch {i}: {a} vs {b}"
    for (name, p), q in zip(model.named_parameters(), params, strict=True):
        assert (p.detach() - q.detach()).abs().max().item() < 1e-5, name


def lstm_into_nn(model: ScratchModel) -> ConciseModel:
    """The scratch LSTM's weights in nn.LSTM: rows in torch's gate order i, f, g (= C~), o; one bias, the other 0."""
    c = model.config
    concise = ConciseModel(ModelConfig(c.vocab_size, c.num_hiddens, "concise", "lstm", c.num_layers))
    with torch.no_grad():
        for layer in range(c.num_layers):
            p = model.layer_params(layer)
            getattr(concise.rnn, f"weight_ih_l{layer}").copy_(torch.cat([p[f"W_x{g}"] for g in "ifco"], 1).t())
            getattr(concise.rnn, f"weight_hh_l{layer}").copy_(torch.cat([p[f"W_h{g}"] for g in "ifco"], 1).t())
            getattr(concise.rnn, f"bias_ih_l{layer}").copy_(torch.cat([p[f"b_{g}"] for g in "ifco"]))
            getattr(concise.rnn, f"bias_hh_l{layer}").zero_()
        concise.linear.weight.copy_(model.W_hq.t())
        concise.linear.bias.copy_(model.b_q)
    return concise


@pytest.mark.parametrize("num_layers", [1, 2])
def test_scratch_lstm_weights_in_nn_lstm_give_the_same_logits(recipe_corpus, num_layers):
    V = len(recipe_corpus.vocab)
    model = ScratchModel(ModelConfig(V, HIDDEN, cell="lstm", num_layers=num_layers), torch.Generator().manual_seed(2))
    with torch.no_grad():  # weights large enough that the gates are far from 0.5 and the state matters
        for p in model.parameters():
            p.normal_(0, 0.2, generator=torch.Generator().manual_seed(p.numel()))
    concise = lstm_into_nn(model)
    X = torch.tensor(recipe_corpus.corpus[: 32 * 35]).reshape(32, 35)
    state = tuple(torch.randn(32, HIDDEN, generator=torch.Generator().manual_seed(i)) for i in range(2 * num_layers))
    ours, (H_ours, C_ours, *_) = model(X, state)
    theirs, (H_nn, C_nn) = concise(X, (torch.stack(state[0::2]), torch.stack(state[1::2])))
    assert (ours - theirs).abs().max().item() < 1e-5
    assert (H_ours - H_nn[0]).abs().max().item() < 1e-5 and (C_ours - C_nn[0]).abs().max().item() < 1e-5


@pytest.mark.parametrize("kind", ["scratch", "concise"])
def test_dropout_acts_in_training_only_and_between_layers(recipe_corpus, kind):
    """A dropout model in eval mode is the same function as its weights without dropout; in training mode it is
    not, and the recurrence itself is untouched (a 1-layer model's final state does not depend on dropout)."""
    V = len(recipe_corpus.vocab)
    X = torch.tensor(recipe_corpus.corpus[: 8 * 35]).reshape(8, 35)
    plain = ModelConfig(V, HIDDEN, kind=kind, cell="lstm", num_layers=2)
    dropped = ModelConfig(V, HIDDEN, kind=kind, cell="lstm", num_layers=2, dropout=0.5)
    a = (ScratchModel if kind == "scratch" else ConciseModel)(plain)
    b = (ScratchModel if kind == "scratch" else ConciseModel)(dropped)
    b.load_state_dict(a.state_dict())
    logits_a, _ = a.eval()(X, a.begin_state(8, "cpu"))
    logits_b, _ = b.eval()(X, b.begin_state(8, "cpu"))
    assert torch.equal(logits_a, logits_b)
    logits_train, _ = b.train()(X, b.begin_state(8, "cpu"))
    assert not torch.allclose(logits_train, logits_a)
    one = ModelConfig(V, HIDDEN, kind=kind, cell="gru", num_layers=1, dropout=0.5)
    c = (ScratchModel if kind == "scratch" else ConciseModel)(one).train()
    _, s1 = c(X, c.begin_state(8, "cpu"))
    _, s2 = c.eval()(X, c.begin_state(8, "cpu"))
    assert torch.equal(s1[0], s2[0])  # only the head's input is dropped, never the recurrence
