"""The optimiser choice (issue 22): the book's SGD stays the default and unchanged; AdamW and weight decay train,
and a run stopped and resumed continues Adam exactly, its moments kept in the checkpoint."""

import pytest
import torch

from charrnn.data import load_corpus
from charrnn.runs.recorder import train_recorded
from charrnn.runs.store import RunStore
from charrnn.step import Trainer
from charrnn.train import TrainConfig, build_model

SMALL = {"num_hiddens": 24, "max_tokens": 2000, "batch_size": 8, "num_steps": 10, "device": "cpu", "val_tokens": 300}


@pytest.fixture(scope="module")
def text(time_machine_path):
    return load_corpus("time_machine", "book", 2000)


def test_sgd_weight_decay_is_l2_after_clipping():
    """One step of SGD with decay wd: p - lr * (clipped g + wd * p), against the same step by hand."""
    config = TrainConfig(num_hiddens=8, lr=0.5, clip=0.1, weight_decay=0.01)
    model = build_model(5, config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    X, Y = torch.randint(0, 5, (2, 3)), torch.randint(0, 5, (2, 3))
    logits, _ = model(X, model.begin_state(2, "cpu"))
    grads = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, Y.t().reshape(-1)), list(model.parameters()))
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
    scale = min(1.0, 0.1 / norm.item())
    Trainer(model, config).step(X, Y, model.begin_state(2, "cpu"))
    for (name, p), g in zip(model.named_parameters(), grads, strict=True):
        expected = before[name] - 0.5 * (g * scale + 0.01 * before[name])
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "weight_decay, schedule", [(0.0, "constant"), (0.1, "constant"), (0.0, "cosine")], ids=["adam", "adamw", "cosine"]
)
def test_adam_resumed_equals_adam_straight_through(text, tmp_path, weight_decay, schedule):
    """A resumed cosine schedule goes on where it stood: its lr depends on the epoch, not on the process."""
    config = TrainConfig(
        num_epochs=6, optimizer="adam", lr=0.01, cell="gru", weight_decay=weight_decay, lr_schedule=schedule, **SMALL
    )
    store = RunStore(tmp_path / "a")
    _, straight = train_recorded(store, text, config)

    store = RunStore(tmp_path / "b")
    stop_after = {"epoch": 0}

    def count(stats):
        stop_after["epoch"] = stats.epoch

    run_id, first = train_recorded(
        store, text, config, on_epoch=count, should_stop=lambda: stop_after["epoch"] >= 3, checkpoint_every=50
    )
    assert first.stopped and len(first.history) == 3
    _, resumed = train_recorded(store, text, TrainConfig(device="cpu"), resume=run_id)
    assert [s.loss for s in straight.history[3:]] == pytest.approx([s.loss for s in resumed.history], rel=1e-6)
    for (name, p), q in zip(straight.model.named_parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    assert straight.history[-1].perplexity < straight.history[0].perplexity  # it learns


def test_cosine_schedule_falls_from_lr_to_zero_by_minibatch_and_sgd_follows_it(text):
    """scheduled_lr by hand at the ends and the middle; a cosine SGD run's steps use it (its first step is the
    constant run's, its last lr is nearly 0), and its weights end elsewhere than the constant run's."""
    from charrnn.train import scheduled_lr, train

    config = TrainConfig(num_epochs=3, lr=2.0, lr_schedule="cosine", **SMALL)
    assert (scheduled_lr(config, 0), scheduled_lr(config, 0.5), scheduled_lr(config, 1)) == (2.0, 1.0, 0.0)
    assert scheduled_lr(config, 0.25) == pytest.approx(1 + 2**-0.5)
    seen = []

    class Watching(Trainer):
        def step(self, X, Y, state):
            seen.append(self.lr)
            return super().step(X, Y, state)

    model = build_model(len(text.vocab), config)
    cosine = train(text.corpus, text.vocab, config, model=model, trainer=Watching(model, config))
    per_epoch = len(seen) // 3
    assert seen[0] == 2.0 and 0 < seen[-1] < 2.0 * (1 - 0.999) and seen == sorted(seen, reverse=True)
    assert seen[per_epoch] == pytest.approx(scheduled_lr(config, 1 / 3), rel=0.05)
    constant = train(text.corpus, text.vocab, TrainConfig(**{**config.__dict__, "lr_schedule": "constant"}))
    assert cosine.history[0].perplexity != constant.history[0].perplexity
    assert cosine.history[-1].perplexity != constant.history[-1].perplexity
