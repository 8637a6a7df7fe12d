"""The book's recipe end to end: 500 epochs, 10,000 chars, hidden 512, lr 1, sequential."""

import pytest

from charrnn.generate import predict
from charrnn.train import TrainConfig, train


def longest_common_substring(a: str, b: str) -> int:
    """Length of the longest run of `a` that occurs verbatim in `b`."""
    best = 0
    for i in range(len(a)):
        lo, hi = best, len(a) - i
        while lo < hi:  # binary search the longest a[i:i+k] found in b
            mid = (lo + hi + 1) // 2
            if a[i : i + mid] in b:
                lo = mid
            else:
                hi = mid - 1
        best = max(best, lo)
    return best


@pytest.mark.slow
def test_book_recipe_memorises_the_text(recipe_corpus):
    config = TrainConfig(device="cpu")  # the recipe, on the CPU CI has
    result = train(recipe_corpus.corpus, recipe_corpus.vocab, config)
    ppl = [s.perplexity for s in result.history]
    assert len(ppl) == 500
    assert ppl[-1] <= 1.2, f"final perplexity {ppl[-1]:.3f} (the book: 1.0)"
    assert 10 < ppl[9] < 18  # the book's curve: ~13.6 at epoch 10
    assert [s.sample is not None for s in result.history].count(True) == 50
    text = recipe_corpus.vocab.decode(recipe_corpus.corpus)
    runs = []
    for prefix in ("time traveller", "traveller"):
        generated = predict(result.model, recipe_corpus.vocab, prefix, 50)[len(prefix) :]
        runs.append(longest_common_substring(generated, text))
    assert max(runs) >= 30, f"longest verbatim runs {runs}"
