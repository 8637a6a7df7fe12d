"""The n-gram mix (issue 22): a model predicts (1 - w) * network + w * the Kneser-Ney n-gram of its training text.
The network trains exactly as without the mix; every prediction (held-out figure, samples, Generate) is the mix's,
each computed here again from its parts; a checkpoint carries the text the n-gram counts, checked on load."""

import math

import pytest
import torch

from charrnn.baseline import fit
from charrnn.data import load_corpus
from charrnn.evaluate import heldout_loss
from charrnn.generate import generate, next_char_probs
from charrnn.models import ModelConfig, mixture
from charrnn.runs.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from charrnn.runs.recorder import train_recorded
from charrnn.train import TrainConfig, train

ORDER, SHARE = 5, 0.3
TINY = dict(num_epochs=3, num_hiddens=24, model="concise", cell="lstm", optimizer="adam", lr=0.01, device="cpu")


@pytest.fixture(scope="module")
def runs(corpus):
    """The same tiny run without and with the mix: (text, held-out slice, plain result, mixed result)."""
    text, val = corpus.corpus[:1500], corpus.corpus[1500:]
    plain = train(text, corpus.vocab, TrainConfig(**TINY), val=val)
    mixed = train(text, corpus.vocab, TrainConfig(**TINY, ngram_order=ORDER, ngram_weight=SHARE), val=val)
    return text, val, plain, mixed


def test_the_network_trains_alone_and_only_its_predictions_are_mixed(runs):
    text, val, plain, mixed = runs
    assert [h.perplexity for h in mixed.history] == [h.perplexity for h in plain.history]
    for a, b in zip(plain.model.state_dict().values(), mixed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert mixture.mixture(plain.model) is None and mixture.mixture(mixed.model).order == ORDER
    assert mixed.history[-1].val_perplexity != plain.history[-1].val_perplexity


def test_the_held_out_figure_is_the_mixs_computed_from_its_parts(runs, corpus):
    text, val, plain, mixed = runs
    ngram = fit(list(text), ORDER, len(corpus.vocab), "kneser-ney")  # counted on the training text only
    with torch.no_grad():
        logits, _ = plain.model.eval()(torch.tensor([val[:-1]]), plain.model.begin_state(1, "cpu"))
    network = torch.softmax(logits.double(), -1)[torch.arange(len(val) - 1), torch.tensor(val[1:])]
    counted = [ngram.prob(tuple(val[max(0, i - ORDER + 1) : i]), val[i]) for i in range(1, len(val))]
    expected = -sum(math.log((1 - SHARE) * p + SHARE * q) for p, q in zip(network.tolist(), counted, strict=True)) / (
        len(val) - 1
    )
    assert heldout_loss(mixed.model, val, "cpu") == pytest.approx(expected, rel=1e-6)
    assert mixed.history[-1].val_perplexity == pytest.approx(math.exp(expected), rel=1e-6)
    # log is concave: the mix's loss is at most the same mix of the two losses (strictly, where the halves differ).
    counted_loss = -sum(map(math.log, counted)) / len(counted)
    assert expected < (1 - SHARE) * math.log(plain.history[-1].val_perplexity) + SHARE * counted_loss


def test_the_ngrams_distribution_is_its_prob_for_every_char_and_sums_to_one(corpus):
    ngram = fit(corpus.corpus, 4, len(corpus.vocab), "kneser-ney")
    for context in [(), tuple(corpus.vocab.encode("th")), tuple(corpus.vocab.encode("the ")), (0, 0, 0)]:
        dist = ngram.distribution(context)
        assert dist == pytest.approx([ngram.prob(context, c) for c in range(len(corpus.vocab))], rel=1e-12)
        assert sum(dist) == pytest.approx(1.0, rel=1e-12)


def test_generation_samples_the_mix(runs, corpus):
    text, val, plain, mixed = runs
    vocab, prefix = corpus.vocab, "the time tra"
    table = mixture.mixture(mixed.model).table
    probs = next_char_probs(mixed.model, vocab, prefix)
    alone = next_char_probs(plain.model, vocab, prefix)
    counted = torch.tensor(table.distribution(tuple(vocab.encode(prefix)[-(ORDER - 1) :])), dtype=torch.float64)
    torch.testing.assert_close(probs.double(), (1 - SHARE) * alone.double() + SHARE * counted, rtol=1e-5, atol=1e-6)
    # Greedy decoding follows the mix's argmax step by step: the plain network's text differs from it.
    greedy = generate(mixed.model, vocab, prefix, 40).generated
    for i in range(1, len(greedy)):
        assert greedy[i] == vocab.idx_to_token[int(next_char_probs(mixed.model, vocab, prefix + greedy[:i]).argmax())]
    assert greedy != generate(plain.model, vocab, prefix, 40).generated
    sampled = [generate(mixed.model, vocab, prefix, 60, temperature=0.8, seed=3).generated for _ in range(2)]
    assert sampled[0] == sampled[1]


def test_a_checkpoint_keeps_the_counted_text_and_refuses_a_broken_one(runs, corpus, tmp_path):
    text, val, plain, mixed = runs
    path = tmp_path / "mixed.pt"
    save_checkpoint(path, mixed.model, corpus.vocab)
    model, _, ckpt = load_checkpoint(path)
    assert ckpt["ngram_tokens"].dtype == torch.uint8 and ckpt["ngram_tokens"].tolist() == list(text)
    assert heldout_loss(model, val, "cpu") == pytest.approx(heldout_loss(mixed.model, val, "cpu"), rel=1e-9)
    assert "ngram_tokens" not in torch.load(save_checkpoint(tmp_path / "plain.pt", plain.model, corpus.vocab))
    for broken, needle in [
        (None, "holds no ngram_tokens"),
        (torch.tensor([1.5, 2.0]), "whole numbers"),
        (torch.tensor([[1, 2], [3, 4]]), "one row"),
        (torch.tensor([1, 2, 3]), f"at least {ORDER} tokens"),
        (torch.tensor([1, 2, 3, 4, len(corpus.vocab)]), f"from 0 to {len(corpus.vocab) - 1}"),
    ]:
        bad = dict(ckpt)
        bad.pop("ngram_tokens")
        if broken is not None:
            bad["ngram_tokens"] = broken
        torch.save(bad, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=needle):
            load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.parametrize(
    "order, weight, needle",
    [
        (7, 0.0, "ngram_order 7 mixes in an n-gram at ngram_weight 0"),
        (0, 0.4, "ngram_weight 0.4 has no n-gram to mix in"),
        (13, 0.4, "ngram_order must be 0 .* from 1 to 12"),
        (7, 1.0, "ngram_weight must be the n-gram's share"),
        (True, 0.4, "ngram_order must be"),
    ],
)
def test_a_mix_that_makes_no_sense_is_refused_naming_the_field(order, weight, needle):
    with pytest.raises(ValueError, match=needle):
        ModelConfig(28, ngram_order=order, ngram_weight=weight).check()


def test_an_order_the_training_text_cannot_give_is_refused_naming_it(corpus, home):
    config = TrainConfig(**{**TINY, "num_epochs": 1}, ngram_order=12, ngram_weight=0.2, batch_size=1, num_steps=2)
    with pytest.raises(ValueError, match="ngram_order 12 is longer than the training text"):
        train(corpus.corpus[:8], corpus.vocab, config)
    with pytest.raises(ValueError, match="ngram_order 12 on 400,000 training chars would count .* lower ngram_order"):
        mixture.NGramMix([0] * 400_000, 12, 0.2, 28)
    # A recorded run is refused before it exists: nothing is left in the store.
    small = load_corpus("time_machine", mode="book", max_tokens=8, download=False)
    with pytest.raises(ValueError, match="ngram_order 12 is longer than the training text"):
        train_recorded(home, small, TrainConfig(**TINY, ngram_order=12, ngram_weight=0.2, val_tokens=10))
    assert home.runs() == []
