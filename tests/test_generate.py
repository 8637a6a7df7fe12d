"""Prediction (D2L 8.5.4) and sampling, on real models and on a model with known logits."""

import math

import pytest
import torch

from charrnn.generate import MAX_PREDS, MAX_PREFIX, generate, next_char_probs, pick, predict, words_seen
from charrnn.models import ModelConfig, ScratchModel
from charrnn.vocab import Vocab

VOCAB = Vocab("aaaabbbccd")  # <unk>, a, b, c, d


class FixedLogits(torch.nn.Module):
    """The model contract with known next-char logits, whatever the input."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor(logits))

    def begin_state(self, batch_size, device):
        return (torch.zeros(batch_size, 1, device=device),)

    def forward(self, X, state):
        return self.logits.expand(X.numel(), -1), state


def test_book_predict_returns_prefix_plus_num_preds():
    model = ScratchModel(ModelConfig(len(VOCAB), 16), generator=torch.Generator().manual_seed(0))
    out = predict(model, VOCAB, "abca", 25)
    assert out.startswith("abca") and len(out) == 4 + 25
    assert out == predict(model, VOCAB, "abca", 25)  # greedy is deterministic


def test_greedy_matches_the_books_one_char_at_a_time_loop():
    model = ScratchModel(ModelConfig(len(VOCAB), 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.W_hh.normal_(0, 0.5)  # make the state matter
    prefix = "abcdab"
    state = model.begin_state(1, "cpu")  # the book's predict_ch8, verbatim in spirit
    outputs = [VOCAB[prefix[0]]]
    for y in prefix[1:]:
        _, state = model(torch.tensor([[outputs[-1]]]), state)
        outputs.append(VOCAB[y])
    for _ in range(30):
        y, state = model(torch.tensor([[outputs[-1]]]), state)
        outputs.append(int(y.argmax(dim=1).reshape(1)))
    assert predict(model, VOCAB, prefix, 30) == VOCAB.decode(outputs)


def test_sampling_is_reproducible_with_a_seed():
    model = ScratchModel(ModelConfig(len(VOCAB), 16), generator=torch.Generator().manual_seed(0))
    a = generate(model, VOCAB, "ab", 40, temperature=1.0, seed=3).generated
    assert a == generate(model, VOCAB, "ab", 40, temperature=1.0, seed=3).generated
    assert a != generate(model, VOCAB, "ab", 40, temperature=1.0, seed=4).generated
    assert "<unk>" not in a


def _frequencies(logits, temperature, top_k, n=20000):
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(len(logits))
    for _ in range(n):
        counts[pick(torch.tensor(logits), temperature, top_k, g)] += 1
    return counts / n


def test_temperature_and_top_k_change_the_distribution_as_documented():
    logits = [5.0, 2.0, 1.0, 0.0, -1.0]  # index 0 is <unk>: never sampled
    for T in (0.5, 1.0, 2.0):
        expected = torch.softmax(torch.tensor([-float("inf"), *logits[1:]]) / T, dim=0)
        torch.testing.assert_close(_frequencies(logits, T, None), expected, atol=0.015, rtol=0)
    top2 = _frequencies(logits, 1.0, 2)
    expected = torch.softmax(torch.tensor([2.0, 1.0]), dim=0)
    assert top2[0] == 0 and top2[3] == 0 and top2[4] == 0
    torch.testing.assert_close(top2[1:3], expected, atol=0.015, rtol=0)
    # low temperature sharpens towards the argmax, high flattens
    assert _frequencies(logits, 0.25, None, 2000)[1] > 0.95
    assert pick(torch.tensor(logits), 0.0, None, None) == 0  # greedy is the plain argmax, as the book


def test_generate_with_known_logits_and_unknown_prefix_chars():
    model = FixedLogits([0.0, 0.0, 9.0, 0.0, 0.0])
    r = generate(model, VOCAB, "aXbY", 5)
    assert r.text == "aXbY" + "b" * 5 and r.unknown == ["X", "Y"]


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"prefix": ""}, "prefix"),
        ({"num_preds": MAX_PREDS + 1}, "num_preds"),
        ({"num_preds": -1}, "num_preds"),
        ({"temperature": -0.5}, "temperature"),
        ({"temperature": math.nan}, "temperature"),
        ({"temperature": math.inf}, "temperature"),
        ({"prefix": "a" * (MAX_PREFIX + 1)}, "prefix is 10,001 characters; the limit is 10,000 \\(shorten it\\)"),
        ({"top_k": 0}, "top_k"),
    ],
)
def test_bad_generation_arguments_name_the_field(kwargs, field):
    model = FixedLogits([0.0, 1.0, 0.0, 0.0, 0.0])
    args = {"prefix": "ab", "num_preds": 5, **kwargs}
    with pytest.raises(ValueError, match=field):
        generate(model, VOCAB, **args)


def test_next_char_probs_takes_a_full_prefix_and_generation_but_no_more():
    model = FixedLogits([0.0, 1.0, 0.0, 0.0, 0.0])
    r = generate(model, VOCAB, "a" * MAX_PREFIX, MAX_PREDS)  # the limits themselves are allowed
    assert r.generated == "a" * MAX_PREDS
    assert next_char_probs(model, VOCAB, r.text).argmax() == 1  # what the Generate page asks at the last step
    with pytest.raises(ValueError, match="text is 20,001 characters; the limit is 20,000"):
        next_char_probs(model, VOCAB, r.text + "a")
    with pytest.raises(ValueError, match="temperature"):
        next_char_probs(model, VOCAB, "ab", temperature=math.nan)


# <unk> (index 0) scores highest on purpose: it must stay out even where the scaling is extreme.
SKEWED = [9.0, 1.0, 3.0, 2.0, 0.0]


@pytest.mark.parametrize("temperature", [1e-39, 1e-300, 5e-324])
def test_a_tiny_temperature_samples_the_best_character_every_time(temperature):
    r = generate(FixedLogits(SKEWED), VOCAB, "ab", 50, temperature=temperature, seed=0)
    assert r.generated == "b" * 50  # index 2, the best after <unk>; torch used to fail inside multinomial
    probs = next_char_probs(FixedLogits(SKEWED), VOCAB, "ab", temperature=temperature)
    assert probs.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]  # the page's view includes <unk>, as before


@pytest.mark.parametrize("temperature", [1e6, 1e300, 1.7e308])
def test_a_huge_temperature_samples_uniformly_and_never_unk(temperature):
    freqs = _frequencies(SKEWED, temperature, None, 8000)
    assert freqs[0] == 0
    torch.testing.assert_close(freqs[1:], torch.full((4,), 0.25), atol=0.03, rtol=0)
    assert "<unk>" not in generate(FixedLogits(SKEWED), VOCAB, "ab", 200, temperature=temperature, seed=1).generated
    probs = next_char_probs(FixedLogits(SKEWED), VOCAB, "ab", temperature=temperature)
    torch.testing.assert_close(probs, torch.full((5,), 0.2), atol=1e-5, rtol=0)


def test_top_k_still_applies_at_extreme_temperatures():
    assert _frequencies(SKEWED, 1e300, 2, 4000)[[1, 4]].sum() == 0  # only b and c, the top two after <unk>


def test_words_seen_counts_whole_words_found_in_the_reference():
    reference = "the time traveller for so it will be convenient to speak of him"
    # "ler" continues a cut word and "trav" is cut by the end: neither counts; "timz" is not in the text
    assert words_seen("ler for so timz it trav", reference) == (3, 4)
    assert words_seen(" The TIME machine ", reference) == (2, 3)  # case is ignored; "machine" is new
    assert words_seen("", reference) == (0, 0)
