"""Held-out perplexity: the split of the text, the definition, and that evaluating changes no training figure."""

import json
import math

import pytest
import torch
from torch.nn import functional as F

from charrnn import evaluate
from charrnn.batches import SeqDataLoader
from charrnn.book import EXPERIMENTS, format_table, run_experiments, train_heldout
from charrnn.data import load_corpus, split_heldout
from charrnn.evaluate import heldout_perplexity
from charrnn.models import ModelConfig, ScratchModel
from charrnn.runs.recorder import train_recorded
from charrnn.runs.store import RunStore
from charrnn.step import Trainer
from charrnn.train import TrainConfig, build_model, train

# ---- (b) the split -------------------------------------------------------------------------------


def test_recipe_holds_out_the_2000_chars_after_the_training_text(recipe_corpus, full_corpus):
    split = split_heldout(recipe_corpus, 2000)
    assert split.train_range == (0, 10_000) and split.val_range == (10_000, 12_000)
    assert split.train == recipe_corpus.corpus  # the recipe's training data are untouched
    assert split.val == full_corpus.corpus[10_000:12_000]
    assert recipe_corpus.vocab.decode(split.val) == full_corpus.text[10_000:12_000]


def test_whole_text_holds_out_its_last_tenth(full_corpus):
    split = split_heldout(full_corpus, 2000)  # max_tokens None: nothing follows the training text
    n = len(full_corpus.text)  # 170,580
    assert split.val_range == (n - n // 10, n) == (153_522, 170_580)
    assert split.train_range == (0, 153_522)
    assert split.train == full_corpus.corpus[:153_522] and split.val == full_corpus.corpus[153_522:]


WORDS = b"the time traveller for so it will be convenient to speak of him was expounding a recondite matter "

SHORT_TEXTS = [  # (text length, max_tokens, expected training range, expected held-out range)
    (3_000, 10_000, (0, 2_700), (2_700, 3_000)),  # shorter than max_tokens: last 10%
    (11_000, 10_000, (0, 9_900), (9_900, 11_000)),  # only 1,000 chars after max_tokens: last 10%
    (13_000, 10_000, (0, 10_000), (10_000, 12_000)),  # room after max_tokens: the slice follows it
    (5_000, 1_000, (0, 1_000), (1_000, 3_000)),
]


@pytest.mark.parametrize("length, max_tokens, train_range, val_range", SHORT_TEXTS)
def test_short_texts_hold_out_their_last_tenth(length, max_tokens, train_range, val_range):
    text = (WORDS * (length // len(WORDS) + 1))[:length]
    corpus = load_corpus(text, mode="raw", max_tokens=max_tokens)
    split = split_heldout(corpus, 2000)
    assert (split.train_range, split.val_range) == (train_range, val_range)
    assert split.train_range[1] <= split.val_range[0]  # never overlapping
    encoded = corpus.vocab.encode(corpus.text)
    assert split.train == encoded[slice(*train_range)] and split.val == encoded[slice(*val_range)]


def test_val_tokens_zero_turns_it_off(recipe_corpus):
    split = split_heldout(recipe_corpus, 0)
    assert split.train == recipe_corpus.corpus and split.val == [] and split.val_range is None


@pytest.mark.parametrize("val_tokens", [-1, 1, 2.5, True, "2000", None])
def test_bad_val_tokens_are_refused_naming_the_field(recipe_corpus, val_tokens):
    with pytest.raises(ValueError, match="val_tokens"):
        split_heldout(recipe_corpus, val_tokens)


def test_a_text_too_short_to_hold_anything_out_is_refused():
    corpus = load_corpus(b"abcdefghijklmn", mode="raw", max_tokens=0)  # 14 chars: 10% is 1 char
    with pytest.raises(ValueError, match="too few to hold out.*val_tokens 0"):
        split_heldout(corpus, 2000)


# ---- (a) the definition ----------------------------------------------------------------------------


def scratch_step(params, H, x):
    """The book's per-step formula on an explicit one-hot row."""
    W_xh, W_hh, b_h, W_hq, b_q = params
    H = torch.tanh(x @ W_xh + H @ W_hh + b_h)
    return H, H @ W_hq + b_q


def concise_step(params, H, x):
    """torch.nn.RNN's documented formula (tanh), then the Linear head."""
    W_ih, W_hh, b_ih, b_hh, W, b = params
    H = torch.tanh(x @ W_ih.T + b_ih + H @ W_hh.T + b_hh)
    return H, H @ W.T + b


def perplexity_by_definition(model, val) -> float:
    """exp(mean cross-entropy of chars 2..N), one char at a time from a zero state, batch 1."""
    params = [p.detach() for p in model.parameters()]
    step = scratch_step if isinstance(model, ScratchModel) else concise_step
    V, H = model.config.vocab_size, model.config.num_hiddens
    state, losses = torch.zeros(1, H), []
    for cur, nxt in zip(val[:-1], val[1:], strict=True):
        state, logits = step(params, state, F.one_hot(torch.tensor([cur]), V).float())
        losses.append(F.cross_entropy(logits, torch.tensor([nxt])).item())
    return math.exp(sum(losses) / len(losses))


@pytest.mark.parametrize("kind", ["scratch", "concise"])
def test_heldout_perplexity_is_the_definition(recipe_corpus, kind):
    split = split_heldout(recipe_corpus, 2000)
    config = TrainConfig(num_epochs=3, num_hiddens=32, model=kind, eval_every=2, device="cpu", predict_every=100)
    result = train(split.train, recipe_corpus.vocab, config, val=split.val)
    assert [s.val_perplexity is not None for s in result.history] == [False, True, True]  # epoch 2, and the last
    ours = result.history[-1].val_perplexity
    assert ours < len(recipe_corpus.vocab)  # it has learnt something the slice shares
    assert ours == pytest.approx(perplexity_by_definition(result.model, split.val), rel=1e-4)


def test_chunks_carry_the_state(recipe_corpus, monkeypatch):
    split = split_heldout(recipe_corpus, 2000)
    model = ScratchModel(ModelConfig(28, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.W_hh.mul_(100)  # a state that matters, so that a chunk starting from zero would show
    chunked = heldout_perplexity(model, split.val, "cpu")  # 1,999 predictions: two chunks
    monkeypatch.setattr(evaluate, "CHUNK_STEPS", 10_000)
    assert chunked == pytest.approx(heldout_perplexity(model, split.val, "cpu"), rel=1e-6)
    monkeypatch.setattr(evaluate, "CHUNK_STEPS", 7)
    assert chunked == pytest.approx(heldout_perplexity(model, split.val, "cpu"), rel=1e-6)


def test_an_overflowing_loss_is_an_infinite_perplexity():
    model = ScratchModel(ModelConfig(5, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.b_q[0] = 1e4  # every prediction is <unk>, sure of it: loss ~1e4, exp() overflows
    assert heldout_perplexity(model, [1, 2, 3, 4, 1], "cpu") == math.inf


# ---- (c) evaluation draws nothing from the training's random streams -------------------------------


@pytest.mark.parametrize("kind", ["scratch", "concise"])
def test_training_figures_are_the_same_with_and_without_heldout(recipe_corpus, kind):
    split = split_heldout(recipe_corpus, 2000)
    config = TrainConfig(num_epochs=3, num_hiddens=64, model=kind, eval_every=1, predict_every=1, device="cpu")
    plain = train(split.train, recipe_corpus.vocab, config)
    held = train(split.train, recipe_corpus.vocab, config, val=split.val)
    for a, b in zip(plain.history, held.history, strict=True):
        assert (a.loss, a.grad_norm, a.clipped, a.sample) == (b.loss, b.grad_norm, b.clipped, b.sample)
        assert a.val_perplexity is None and b.val_perplexity is not None
    for p, q in zip(plain.model.parameters(), held.model.parameters(), strict=True):
        assert torch.equal(p, q)


# ---- (d) the book's second run: the state reset before every minibatch -----------------------------


def test_state_reset_is_a_fresh_zero_state_every_minibatch(recipe_corpus):
    V, epochs = len(recipe_corpus.vocab), 2
    config = TrainConfig(num_epochs=epochs, num_hiddens=32, state="reset", seed=3, device="cpu", predict_every=100)
    reset = train(recipe_corpus.corpus, recipe_corpus.vocab, config)
    carry = train(recipe_corpus.corpus, recipe_corpus.vocab, TrainConfig(**{**vars(config), "state": "carry"}))
    assert [s.loss for s in reset.history] != [s.loss for s in carry.history]

    model = build_model(V, config)  # by hand: the sequential iterator, a zero state for every minibatch
    trainer = Trainer(model, config)
    loader = SeqDataLoader(recipe_corpus.corpus, 32, 35, "sequential", seed=3)
    for stats in reset.history:
        losses = [trainer.step(X, Y, model.begin_state(32, "cpu"))[0].item() for X, Y in loader]
        assert stats.loss == pytest.approx(sum(losses) / len(losses), rel=1e-6)


# ---- the config's new fields -------------------------------------------------------------------------

BAD_FIELDS = [  # (field, value, words the message must hold)
    ("val_tokens", -1, "val_tokens"),
    ("eval_every", 0, "eval_every"),
    ("state", "sometimes", "state must be one of carry, reset"),
    ("model", "lstm", "model must be one of scratch, concise"),
    ("lr", 1e39, "lr must be a positive number at most 1,000,000"),
    ("clip", 1e7, "clip"),
    ("seed", -1, "seed"),
    ("seed", 2**63, "seed"),
    ("seed", True, "seed"),
]


@pytest.mark.parametrize("field, value, needle", BAD_FIELDS)
def test_new_fields_are_validated(field, value, needle):
    with pytest.raises(ValueError, match=needle):
        TrainConfig(**{field: value}).validate()


def test_configs_stored_before_the_new_fields_still_open():
    old = {"num_epochs": 5, "lr": 1.0, "sampling": "sequential", "seed": 2**63 - 1, "predict_every": 10}
    config = TrainConfig.from_dict(old).validate()
    assert (config.val_tokens, config.eval_every, config.state, config.model) == (2000, 10, "carry", "scratch")


# ---- the chapter's experiments -----------------------------------------------------------------------


def test_reproduce_runs_the_three_experiments_and_tabulates_them(recipe_corpus):
    configs = []

    def recorded(corpus, config, name=None, on_epoch=None):  # what train_recorded returns: (run id, result)
        configs.append(config)
        return f"run{len(configs)}", train_heldout(corpus, config, name, on_epoch)[1]

    seen = []
    tiny = {"num_epochs": 2, "num_hiddens": 16, "eval_every": 1, "device": "cpu"}
    rows = run_experiments(recipe_corpus, recorded, tiny, on_epoch=lambda name, s: seen.append((name, s.epoch)))
    assert [(c.model, c.resets_state, c.num_epochs) for c in configs] == [
        ("scratch", False, 2),
        ("scratch", True, 2),
        ("concise", False, 2),
    ]
    assert seen == [(e.name, epoch) for e in EXPERIMENTS for epoch in (1, 2)]
    assert [r.run_id for r in rows] == ["run1", "run2", "run3"]
    for row, exp in zip(rows, EXPERIMENTS, strict=True):
        assert row.book_perplexity == exp.book_perplexity and row.book_continuation == exp.book_continuation
        assert 1 < row.best_val_perplexity <= row.val_perplexity < 28 and 1 < row.perplexity < 28
        assert row.continuation.startswith("time traveller") and len(row.continuation) == len("time traveller") + 50
        assert row.device == "cpu" and row.seconds > 0 and row.tokens_per_sec > 0
    table = format_table(rows)
    assert table.splitlines()[0].split()[:3] == ["run", "book", "ppl"]
    for row in rows:
        assert row.name in table and repr(row.book_continuation) in table and f"{row.val_perplexity:.2f}" in table


def test_the_experiments_are_the_books_settings():
    assert [e.book_perplexity for e in EXPERIMENTS] == [1.0, 1.5, 1.3]
    for e in EXPERIMENTS:
        config = TrainConfig(**e.overrides).validate()
        assert (config.num_epochs, config.lr, config.batch_size, config.num_steps) == (500, 1.0, 32, 35)
        assert (config.max_tokens, config.clip, config.sampling, config.val_tokens) == (10_000, 1.0, "sequential", 2000)
    assert TrainConfig(**EXPERIMENTS[2].overrides).num_hiddens == 256


# ---- recorded runs: the store keeps the held-out figures, and a resumed run keeps its split ---------

SMALL = dict(num_hiddens=16, batch_size=4, num_steps=8, eval_every=2, predict_every=100, device="cpu")


def test_a_recorded_run_stores_its_heldout_perplexity_at_the_eval_cadence(recipe_corpus, tmp_path):
    store = RunStore(tmp_path)
    run_id, result = train_recorded(store, recipe_corpus, TrainConfig(num_epochs=5, **SMALL))
    stored = [e["val_perplexity"] for e in store.history(run_id)]
    assert [v is not None for v in stored] == [False, True, False, True, True]  # epochs 2, 4 and the last
    assert stored == [s.val_perplexity for s in result.history]
    run = next(r for r in store.runs() if r["id"] == run_id)
    assert run["final_val_perplexity"] == stored[-1] and run["best_val_perplexity"] == min(v for v in stored if v)


def test_a_resumed_run_evaluates_the_same_slice_and_records_its_new_goal(recipe_corpus, tmp_path):
    store = RunStore(tmp_path)
    config = TrainConfig(num_epochs=4, **SMALL)
    whole, _ = train_recorded(store, recipe_corpus, config)
    first, _ = train_recorded(store, recipe_corpus, TrainConfig(num_epochs=2, **SMALL), checkpoint_every=2)
    resumed, _ = train_recorded(store, recipe_corpus, config, resume=first, num_epochs=4)
    assert resumed == first and store.run(first)["config"]["num_epochs"] == 4
    held = [[e["val_perplexity"] or 0.0 for e in store.history(r)] for r in (whole, first)]
    # the same weights, the same held-out chars
    assert held[0][1] and held[0][3] and held[0] == pytest.approx(held[1], rel=1e-5)


def test_a_run_recorded_before_heldout_existed_resumes_without_one(recipe_corpus, tmp_path):
    store = RunStore(tmp_path)
    run_id, _ = train_recorded(store, recipe_corpus, TrainConfig(num_epochs=2, val_tokens=0, **SMALL))
    with store._connect() as db:  # as an older version wrote it: no val_tokens in the config
        config = {k: v for k, v in store.run(run_id)["config"].items() if k not in ("val_tokens", "eval_every")}
        db.execute("UPDATE runs SET config=:config WHERE id=:id", {"config": json.dumps(config), "id": run_id})
    train_recorded(store, recipe_corpus, TrainConfig(**SMALL), resume=run_id, num_epochs=3)
    assert [e["val_perplexity"] for e in store.history(run_id)] == [None, None, None]


@pytest.mark.parametrize(
    "kind, cell, num_layers, dropout",
    [("scratch", "gru", 1, 0.0), ("scratch", "lstm", 2, 0.3), ("concise", "gru", 2, 0.0), ("concise", "lstm", 1, 0.5)],
)
def test_every_cell_reports_heldout_perplexity_by_the_definition(recipe_corpus, kind, cell, num_layers, dropout):
    """Chars 2..N of the slice, each predicted from the chars before it, one char per forward call from a zero state
    (batch 1), with dropout off whatever the model's mode."""
    split = split_heldout(recipe_corpus, 500)
    config = TrainConfig(
        num_epochs=2, num_hiddens=24, model=kind, cell=cell, num_layers=num_layers, dropout=dropout, device="cpu"
    )
    result = train(split.train, recipe_corpus.vocab, config, val=split.val)
    model = result.model.eval()
    state, losses = model.begin_state(1, "cpu"), []
    with torch.no_grad():
        for cur, nxt in zip(split.val[:-1], split.val[1:], strict=True):
            logits, state = model(torch.tensor([[cur]]), state)
            losses.append(F.cross_entropy(logits, torch.tensor([nxt])).item())
    assert result.history[-1].val_perplexity == pytest.approx(math.exp(sum(losses) / len(losses)), rel=1e-4)
    assert result.history[-1].val_perplexity < len(recipe_corpus.vocab)
    model.train()  # evaluation switches dropout off, then leaves the model as it found it
    assert heldout_perplexity(model, split.val, "cpu") == result.history[-1].val_perplexity
    assert model.training
