"""K trials trained as one batched model (charrnn.tune.batched) against each trial's own single run
(charrnn.train's Trainer and train), minibatch by minibatch and epoch by epoch."""

import math

import pytest
import torch

from charrnn.batches import SeqDataLoader
from charrnn.device import free_bytes
from charrnn.evaluate import heldout_perplexity
from charrnn.models import detach_state
from charrnn.step import Trainer
from charrnn.train import TrainConfig, build_model, estimate_bytes, train
from charrnn.tune.batched import SHARED, BatchedScratch, BatchedTrainer, check_group_fits, train_batched

HIDDEN = 48  # small enough to be quick, large enough that clipping and the state matter
MINIBATCHES = 20
# Four members: different lr, clip (0.1 binds often, 0 is off) and seed.
MEMBERS = [(0.5, 1.0, 0), (1.0, 0.1, 7), (2.0, 0.0, 13), (1.5, 5.0, 21)]
RAGGED = 3381  # chars: with batch 32 x 35 steps, an offset up to 20 gives 3 minibatches and a larger one 2


def configs(members=MEMBERS, **overrides) -> list[TrainConfig]:
    base = dict(num_hiddens=HIDDEN, device="cpu", predict_every=1000)
    return [TrainConfig(lr=lr, clip=clip, seed=seed, **{**base, **overrides}) for lr, clip, seed in members]


def test_forward_and_gradients_equal_each_members_rnnscratch(recipe_corpus):
    """The hand-written batched backward, biases non-zero and a start state that wants its gradient."""
    V, group = len(recipe_corpus.vocab), configs()
    members = [build_model(V, c) for c in group]
    with torch.no_grad():
        for m in members:
            m.b_h.normal_(0, 0.1)
            m.b_q.normal_(0, 0.1)
    model = BatchedScratch(members)
    X = torch.stack([torch.tensor(recipe_corpus.corpus[k * 500 : k * 500 + 32 * 35]).reshape(32, 35) for k in range(4)])
    H0 = (torch.randn(4, 32, HIDDEN) * 0.5).requires_grad_(True)
    logits, (H,) = model(X, (H0,))
    assert logits.shape == (4, 35 * 32, V) and H.shape == (4, 32, HIDDEN)
    grads = torch.autograd.grad(logits.square().mean(dim=(1, 2)).sum(), [*model.parameters(), H0])
    for k, member in enumerate(members):
        h0 = H0[k].detach().clone().requires_grad_(True)
        theirs, (H_k,) = member(X[k], (h0,))
        torch.testing.assert_close(logits[k], theirs, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(H[k], H_k, rtol=1e-5, atol=1e-6)
        expected = torch.autograd.grad(theirs.square().mean(), [*member.parameters(), h0])
        for ours, want in zip(grads, expected, strict=True):
            torch.testing.assert_close(ours[k], want, rtol=1e-4, atol=1e-7)


def minibatches(corpus, config: TrainConfig, n: int):
    """The first n minibatches the config's own loader yields, with whether each starts an epoch."""
    loader = SeqDataLoader(corpus, config.batch_size, config.num_steps, config.sampling, seed=config.seed)
    out = []
    while len(out) < n:
        out += [(X, Y, i == 0) for i, (X, Y) in enumerate(loader)]
    return out[:n]


def single_losses(corpus, V, config: TrainConfig, n: int):
    """Per-minibatch losses of the config's single run (Trainer.step, as train calls it), and its weights
    after each minibatch."""
    model = build_model(V, config)
    trainer, state, losses, weights = Trainer(model, config), None, [], []
    for X, Y, first in minibatches(corpus, config, n):
        state = model.begin_state(X.shape[0], "cpu") if first or config.resets_state else detach_state(state)
        loss, _, _, state = trainer.step(X, Y, state)
        losses.append(loss.item())
        weights.append([p.detach().clone() for p in model.parameters()])
    return losses, weights


def batched_losses(corpus, V, group: list[TrainConfig], n: int, masked=None, mask_from=None):
    """Per-minibatch losses of the members trained together; member `masked` is masked out from
    minibatch `mask_from` on. Returns the losses (member by minibatch), the model and the clipped counts."""
    model = BatchedScratch([build_model(V, c) for c in group])
    trainer = BatchedTrainer(model, [c.lr for c in group], [c.clip for c in group])
    streams = [minibatches(corpus, c, n) for c in group]
    losses, clipped, state = [[] for _ in group], torch.zeros(len(group)), None
    for i in range(n):
        X, Y = torch.stack([s[i][0] for s in streams]), torch.stack([s[i][1] for s in streams])
        assert len({s[i][2] for s in streams}) == 1, "the recipe's text gives every member 8 minibatches an epoch"
        first = streams[0][i][2]
        state = model.begin_state(X.shape[1], "cpu") if first or group[0].resets_state else detach_state(state)
        mask = None
        if masked is not None and i >= mask_from:
            mask = torch.tensor([k != masked for k in range(len(group))])
        loss, _, was_clipped, state = trainer.step(X, Y, state, mask)
        clipped += was_clipped
        for k in range(len(group)):
            losses[k].append(loss[k].item())
    return losses, model, clipped


def assert_close_losses(ours, theirs, what):
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert abs(a - b) / b < 1e-5, f"{what}, minibatch {i}: {a} vs {b}"


@pytest.mark.parametrize("sampling", ["sequential", "random"])
def test_each_member_equals_its_single_run_minibatch_by_minibatch(recipe_corpus, sampling):
    corpus, V = recipe_corpus.corpus, len(recipe_corpus.vocab)
    group = configs(sampling=sampling)
    losses, model, clipped = batched_losses(corpus, V, group, MINIBATCHES)
    assert clipped[1] > 0 and clipped[2] == 0, "clip 0.1 should bind at some minibatches, clip 0 never"
    for k, config in enumerate(group):
        single, weights = single_losses(corpus, V, config, MINIBATCHES)
        assert_close_losses(losses[k], single, f"member {k}")
        for p, q in zip(model.member(k).parameters(), weights[-1], strict=True):
            torch.testing.assert_close(p.detach(), q, rtol=1e-4, atol=1e-6)
    assert len({round(losses[k][-1], 4) for k in range(len(group))}) == len(group), "members must differ"


def test_a_member_masked_halfway_is_frozen_and_the_others_are_unchanged(recipe_corpus):
    corpus, V, masked, at = recipe_corpus.corpus, len(recipe_corpus.vocab), 2, MINIBATCHES // 2
    group = configs()
    losses, model, _ = batched_losses(corpus, V, group, MINIBATCHES, masked=masked, mask_from=at)
    for k, config in enumerate(group):
        single, weights = single_losses(corpus, V, config, MINIBATCHES)
        if k == masked:
            assert_close_losses(losses[k][:at], single[:at], "the masked member before its mask")
            frozen = weights[at - 1]  # its weights after its last update
            for p, q in zip(model.member(k).parameters(), frozen, strict=True):
                torch.testing.assert_close(p.detach(), q, rtol=1e-4, atol=1e-6)
        else:
            assert_close_losses(losses[k], single, f"member {k}")


def test_a_masked_member_with_nan_gradients_stays_frozen_and_leaks_nothing():
    """A broken member, masked, keeps its weights bit for bit, and the others step exactly as they would
    beside a healthy one."""
    V, group, active = 28, configs(), torch.tensor([True, False, True, True])
    X = torch.randint(0, V, (len(group), 32, 35), generator=torch.Generator().manual_seed(0))
    models = []
    for broken in (True, False):
        model = BatchedScratch([build_model(V, c) for c in group])
        if broken:
            with torch.no_grad():
                model.W_hq[1].fill_(float("nan"))  # member 1's loss and gradients are NaN
        before = [p.detach().clone() for p in model.parameters()]
        trainer = BatchedTrainer(model, [c.lr for c in group], [c.clip for c in group])
        loss, _, _, _ = trainer.step(X, X, model.begin_state(32, "cpu"), active)
        assert math.isnan(loss[1].item()) == broken
        for p, q in zip(model.parameters(), before, strict=True):
            assert torch.equal(p[1].nan_to_num(nan=7.0), q[1].nan_to_num(nan=7.0)), "the masked member moved"
        assert not torch.equal(model.W_hh[0], before[1][0]), "an active member should move"
        models.append(model)
    for p, q in zip(*(m.parameters() for m in models), strict=True):
        assert torch.equal(p[[0, 2, 3]], q[[0, 2, 3]]), "the broken member changed the others"


def minibatch_counts(corpus, config: TrainConfig, epochs: int) -> list[int]:
    loader = SeqDataLoader(corpus, config.batch_size, config.num_steps, config.sampling, seed=config.seed)
    return [sum(1 for _ in loader) for _ in range(epochs)]


def single_loader_after(corpus, config: TrainConfig, epochs: int) -> dict:
    loader = SeqDataLoader(corpus, config.batch_size, config.num_steps, config.sampling, seed=config.seed)
    for _ in range(epochs):
        list(loader)
    return loader.state_dict()


def assert_same_history(ours, theirs, what):
    assert len(ours) == len(theirs), what
    for a, b in zip(ours, theirs, strict=True):
        assert a.epoch == b.epoch
        for name in ("loss", "perplexity", "grad_norm"):
            assert math.isclose(getattr(a, name), getattr(b, name), rel_tol=1e-5), f"{what} epoch {a.epoch} {name}"
        assert a.clipped == b.clipped, f"{what} epoch {a.epoch}: share of minibatches clipped"
        assert (a.val_perplexity is None) == (b.val_perplexity is None), f"{what} epoch {a.epoch}: eval cadence"
        if a.val_perplexity is not None:
            assert math.isclose(a.val_perplexity, b.val_perplexity, rel_tol=1e-5), f"{what} epoch {a.epoch}"
        assert a.sample == b.sample, f"{what} epoch {a.epoch}"


def test_train_batched_equals_train_per_member_with_uneven_epochs(recipe_corpus):
    """Members whose offsets give them a different number of minibatches in an epoch, held-out text on
    each member's own cadence, samples: every epoch's figures equal the member's own `train` run."""
    corpus, vocab = recipe_corpus.corpus[:RAGGED], recipe_corpus.vocab
    val = recipe_corpus.corpus[RAGGED : RAGGED + 600]
    group = configs(num_epochs=4, val_tokens=600)
    for config, every in zip(group, (1, 2, 3, 4), strict=True):
        config.eval_every = config.predict_every = every
    counts = [minibatch_counts(corpus, c, 4) for c in group]
    assert any(len({c[e] for c in counts}) > 1 for e in range(4)), "some epoch should be uneven across members"
    seen = []
    results = train_batched(corpus, vocab, group, on_epoch=lambda k, s: seen.append((k, s.epoch)), val=val)
    assert seen == [(k, e) for e in range(1, 5) for k in range(4)]
    for k, (config, result) in enumerate(zip(group, results, strict=True)):
        single = train(corpus, vocab, config, val=val)
        assert result.status == "finished" and not result.diverged and result.config is config
        assert result.loader.state_dict() == single_loader_after(corpus, config, 4)
        assert_same_history(result.history, single.history, f"member {k}")
        final = heldout_perplexity(result.model, val, "cpu")
        assert result.history[-1].val_perplexity == final
        assert math.isclose(final, single.history[-1].val_perplexity, rel_tol=1e-5)
        for p, q in zip(result.model.parameters(), single.model.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


def test_a_diverging_member_is_masked_and_the_others_finish(recipe_corpus):
    corpus, vocab = recipe_corpus.corpus[:RAGGED], recipe_corpus.vocab
    group = configs([(0.5, 1.0, 0), (1e6, 0.0, 1), (2.0, 1.0, 2)], num_epochs=3)
    results = train_batched(corpus, vocab, group)
    bad = results[1]
    assert bad.status == "diverged" and bad.diverged
    assert len(bad.history) < 3 and not math.isfinite(bad.history[-1].perplexity)
    assert all(math.isfinite(s.perplexity) for s in bad.history[:-1])
    for k in (0, 2):
        assert results[k].status == "finished" and len(results[k].history) == 3
        assert_same_history(results[k].history, train(corpus, vocab, group[k]).history, f"member {k}")


def test_a_member_diverging_after_its_first_epoch_keeps_its_last_finite_epoch(recipe_corpus):
    """As `train_recorded` keeps a diverged run's last finite epoch for a checkpoint: lr 1000 unclipped
    diverges in epoch 2 here; its weights and iterator after epoch 1 are those of its single run."""
    corpus, vocab = recipe_corpus.corpus[:RAGGED], recipe_corpus.vocab
    group = configs([(0.5, 1.0, 0), (1e3, 0.0, 1)], num_epochs=3)
    bad = train_batched(corpus, vocab, group)[1]
    assert bad.status == "diverged" and len(bad.history) == 2
    epoch, model, loader_state = bad.last_good
    one_epoch = TrainConfig(**{**vars(group[1]), "num_epochs": 1})
    loader = SeqDataLoader(corpus, 32, 35, seed=1)
    alone = train(corpus, vocab, one_epoch, loader=loader)
    assert epoch == 1 and loader_state == loader.state_dict()
    for p, q in zip(model.parameters(), alone.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    assert train_batched(corpus, vocab, configs([(1e6, 0.0, 1)], num_epochs=2))[0].last_good is None  # epoch 1


def test_a_pruned_member_leaves_at_the_epoch_boundary_and_the_others_go_on(recipe_corpus):
    corpus, vocab = recipe_corpus.corpus[:RAGGED], recipe_corpus.vocab
    group = configs(num_epochs=3)
    asked = []

    def should_prune(k, stats):
        asked.append((k, stats.epoch))
        return k == 1 and stats.epoch == 1

    results = train_batched(corpus, vocab, group, should_prune=should_prune)
    assert [r.status for r in results] == ["finished", "pruned", "finished", "finished"]
    assert len(results[1].history) == 1
    assert asked == [(0, 1), (1, 1), (2, 1), (3, 1), (0, 2), (2, 2), (3, 2)], "never after the last epoch"
    one_epoch = train(corpus, vocab, TrainConfig(**{**vars(group[1]), "num_epochs": 1}))
    for p, q in zip(results[1].model.parameters(), one_epoch.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    for k in (0, 2, 3):
        assert_same_history(results[k].history, train(corpus, vocab, group[k]).history, f"member {k}")


def test_should_stop_stops_every_member(recipe_corpus):
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 10  # during the second epoch (8 minibatches an epoch)

    results = train_batched(recipe_corpus.corpus, recipe_corpus.vocab, configs(num_epochs=3), should_stop=should_stop)
    for r in results:
        assert r.status == "stopped" and r.stopped and len(r.history) == 1 and r.model is not None


def shared_field_changes():
    other = {"num_hiddens": 32, "batch_size": 16, "num_steps": 20, "sampling": "random", "state": "reset"}
    other |= {"model": "concise", "device": "auto", "num_epochs": 7, "max_tokens": 5000, "val_tokens": 100}
    assert set(other) == set(SHARED)
    return sorted(other.items())


@pytest.mark.parametrize("field,value", shared_field_changes())
def test_members_that_cannot_share_a_step_are_refused_naming_the_field(recipe_corpus, field, value):
    group = configs()
    setattr(group[2], field, value)
    with pytest.raises(ValueError, match=f"^{field} must be the same for every trial") as e:
        train_batched(recipe_corpus.corpus, recipe_corpus.vocab, group)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "group,message",
    [
        ([], "^configs must hold at least one TrainConfig"),
        (configs(model="concise"), "^model must be scratch to train trials batched, not 'concise'"),
        (configs([(0.5, 1.0, 0), (-1.0, 1.0, 1)]), "^lr must be a positive number"),
    ],
)
def test_bad_groups_are_refused_in_one_line(recipe_corpus, group, message):
    with pytest.raises(ValueError, match=message):
        train_batched(recipe_corpus.corpus, recipe_corpus.vocab, group)


def test_a_group_the_memory_cannot_hold_is_refused_before_anything_is_built():
    config, device = TrainConfig(num_hiddens=8192, device="cpu"), torch.device("cpu")
    too_many = int(free_bytes(device) / estimate_bytes(config, 100)) + 2  # a margin: free memory moves
    with pytest.raises(ValueError, match=f"^{too_many} trials of num_hiddens 8192 .* train fewer at once$"):
        check_group_fits([config] * too_many, 100, device)
    check_group_fits([config], 100, device)  # one fits on this machine


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the batched step on a GPU needs a CUDA GPU")
def test_members_trained_batched_on_the_gpu_equal_their_single_runs_there(recipe_corpus):
    """tools/gpu_check.sh runs this (`-k gpu`): 2 epochs of the recipe's text, K = 4, on the device."""
    group = configs(device="cuda", num_epochs=2)
    results = train_batched(recipe_corpus.corpus, recipe_corpus.vocab, group)
    for config, result in zip(group, results, strict=True):
        alone = train(recipe_corpus.corpus, recipe_corpus.vocab, config)
        assert result.device.startswith("cuda") and result.status == "finished"
        assert [s.loss for s in result.history] == pytest.approx([s.loss for s in alone.history], rel=1e-5)
