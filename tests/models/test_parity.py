"""charrnn's fast execution against the book's own formulation (D2L 8.5), written out plainly here:
explicit one-hot inputs, a Python loop of per-step matmuls, autograd, the book's clipping and SGD."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from charrnn.batches import SeqDataLoader
from charrnn.models import ModelConfig, ScratchModel
from charrnn.step import Trainer, clip_gradients
from charrnn.train import TrainConfig, train

HIDDEN = 64  # small enough to be quick, large enough that clipping and the state matter


def get_params(vocab_size, num_hiddens):
    """The book's get_params, drawing from the global RNG after torch.manual_seed."""

    def normal(shape):
        return torch.randn(size=shape) * 0.01

    W_xh, W_hh = normal((vocab_size, num_hiddens)), normal((num_hiddens, num_hiddens))
    b_h = torch.zeros(num_hiddens)
    W_hq, b_q = normal((num_hiddens, vocab_size)), torch.zeros(vocab_size)
    params = [W_xh, W_hh, b_h, W_hq, b_q]
    for p in params:
        p.requires_grad_(True)
    return params


def rnn(inputs, state, params):
    W_xh, W_hh, b_h, W_hq, b_q = params
    (H,) = state
    outputs = []
    for X in inputs:  # inputs: (num_steps, batch_size, vocab_size)
        H = torch.tanh(torch.mm(X, W_xh) + torch.mm(H, W_hh) + b_h)
        outputs.append(torch.mm(H, W_hq) + b_q)
    return torch.cat(outputs, dim=0), (H,)


def grad_clipping(params, theta):
    norm = torch.sqrt(sum(torch.sum(p.grad**2) for p in params))
    if norm > theta:
        for p in params:
            p.grad[:] *= theta / norm


def textbook_losses(params, loader, vocab_size, num_epochs, lr, theta, use_random_iter):
    """The book's train_epoch_ch8 loop; returns the loss of every minibatch."""
    losses, loss_fn = [], nn.CrossEntropyLoss()
    for _ in range(num_epochs):
        state = None
        for X, Y in loader:
            if state is None or use_random_iter:
                state = (torch.zeros((X.shape[0], params[1].shape[0])),)
            else:
                for s in state:
                    s.detach_()
            y = Y.T.reshape(-1)
            y_hat, state = rnn(F.one_hot(X.T, vocab_size).type(torch.float32), state, params)
            loss = loss_fn(y_hat, y.long()).mean()
            loss.backward()
            grad_clipping(params, theta)
            with torch.no_grad():
                for p in params:
                    p -= lr * p.grad / 1
                    p.grad.zero_()
            losses.append(loss.item())
    return losses


def test_init_matches_the_books_get_params():
    torch.manual_seed(7)
    book = get_params(28, 32)
    ours = ScratchModel(ModelConfig(28, 32), generator=torch.Generator().manual_seed(7))
    for p, (name, q) in zip(book, ours.named_parameters(), strict=True):
        assert torch.equal(p.detach(), q.detach()), name
    assert [n for n, _ in ours.named_parameters()] == ["W_xh", "W_hh", "b_h", "W_hq", "b_q"]


def test_forward_equals_explicit_one_hot_step_by_step(recipe_corpus):
    model = ScratchModel(ModelConfig(28, HIDDEN), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # make the biases non-zero so their placement is tested too
        model.b_h.normal_(0, 0.1)
        model.b_q.normal_(0, 0.1)
    params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    X = torch.tensor(recipe_corpus.corpus[: 32 * 35]).reshape(32, 35)
    H0 = torch.randn(32, HIDDEN) * 0.5
    ours, (H_ours,) = model(X, (H0,))
    book, (H_book,) = rnn(F.one_hot(X.T, 28).float(), (H0,), params)
    assert ours.shape == (35 * 32, 28)
    torch.testing.assert_close(ours, book, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(H_ours, H_book, rtol=1e-5, atol=1e-6)
    # gradients of a loss through every step, also into the initial state
    target = torch.tensor(recipe_corpus.corpus[1 : 32 * 35 + 1]).reshape(32, 35).T.reshape(-1)
    H0a, H0b = H0.clone().requires_grad_(True), H0.clone().requires_grad_(True)
    g_ours = torch.autograd.grad(F.cross_entropy(model(X, (H0a,))[0], target), [*model.parameters(), H0a])
    g_book = torch.autograd.grad(
        F.cross_entropy(rnn(F.one_hot(X.T, 28).float(), (H0b,), params)[0], target), [*params, H0b]
    )
    for a, b in zip(g_ours, g_book, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("sampling", ["sequential", "random"])
def test_training_losses_equal_the_textbook_loop(recipe_corpus, sampling):
    """Per minibatch, 40 of them: Trainer.step (what train uses) vs the book's loop."""
    V, lr, theta, seed, epochs = len(recipe_corpus.vocab), 1.0, 0.1, 3, 5
    torch.manual_seed(seed)
    params = get_params(V, HIDDEN)
    book = textbook_losses(
        params,
        SeqDataLoader(recipe_corpus.corpus, 32, 35, sampling, seed=seed),
        V,
        epochs,
        lr,
        theta,
        sampling == "random",
    )

    model = ScratchModel(ModelConfig(V, HIDDEN), generator=torch.Generator().manual_seed(seed))
    trainer = Trainer(model, TrainConfig(lr=lr, clip=theta, num_hiddens=HIDDEN, sampling=sampling))
    loader = SeqDataLoader(recipe_corpus.corpus, 32, 35, sampling, seed=seed)
    ours, clipped = [], 0
    for _ in range(epochs):
        state = None
        for X, Y in loader:
            if state is None or sampling == "random":
                state = model.begin_state(X.shape[0], "cpu")
            state = tuple(s.detach() for s in state)
            loss, _, was_clipped, state = trainer.step(X, Y, state)
            ours.append(loss.item())
            clipped += int(was_clipped)
    assert len(ours) == len(book) == 40
    assert clipped > 0, "theta should bind at some minibatches so that clipping is exercised"
    for i, (a, b) in enumerate(zip(ours, book, strict=True)):
        assert abs(a - b) / b < 1e-5, f"minibatch {i}: {a} vs {b}"
    for p, q in zip(model.parameters(), params, strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("sampling", ["sequential", "random"])
def test_train_epochs_equal_the_textbook_loop(recipe_corpus, sampling):
    """The whole `train` function: each epoch's perplexity is exp(mean of the book's minibatch losses)."""
    V, seed, epochs = len(recipe_corpus.vocab), 5, 4
    torch.manual_seed(seed)
    params = get_params(V, HIDDEN)
    book = textbook_losses(
        params,
        SeqDataLoader(recipe_corpus.corpus, 32, 35, sampling, seed=seed),
        V,
        epochs,
        1.0,
        0.5,
        sampling == "random",
    )
    config = TrainConfig(
        num_epochs=epochs, num_hiddens=HIDDEN, sampling=sampling, seed=seed, clip=0.5, device="cpu", predict_every=1000
    )
    result = train(recipe_corpus.corpus, recipe_corpus.vocab, config)
    for e, stats in enumerate(result.history):
        mean = sum(book[e * 8 : (e + 1) * 8]) / 8
        assert abs(stats.loss - mean) / mean < 1e-5
        assert math.isclose(stats.perplexity, math.exp(mean), rel_tol=1e-5)


def test_clipping_bounds_the_norm_and_keeps_the_direction():
    torch.manual_seed(0)
    grads = [torch.randn(5, 7) * 3, torch.randn(7), torch.randn(3, 3)]
    before = torch.cat([g.flatten() for g in grads]).clone()
    norm, clipped = clip_gradients(grads, theta=1.0)
    after = torch.cat([g.flatten() for g in grads])
    assert norm.item() == pytest.approx(before.norm().item(), rel=1e-6)
    assert bool(clipped) and after.norm().item() <= 1.0 + 1e-6
    assert torch.nn.functional.cosine_similarity(before, after, dim=0).item() == pytest.approx(1.0, abs=1e-6)
    small = [torch.full((4,), 0.1)]
    norm, clipped = clip_gradients(small, theta=1.0)
    assert not bool(clipped) and torch.equal(small[0], torch.full((4,), 0.1))  # below theta: untouched
