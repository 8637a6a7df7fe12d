"""Both minibatch iterators against the book's semantics (D2L 8.3.4)."""

import pytest
import torch

from charrnn.batches import SeqDataLoader, largest_fit, min_tokens

CORPUS = list(range(1000))  # token i at position i: positions are visible in the batches


@pytest.mark.parametrize("sampling", ["sequential", "random"])
def test_y_is_x_shifted_by_one(sampling):
    for X, Y in SeqDataLoader(CORPUS, 4, 7, sampling, seed=1):
        assert X.shape == Y.shape == (4, 7)
        assert torch.equal(Y, X + 1)
        assert torch.equal(X[:, 1:], X[:, :-1] + 1)  # each row is a contiguous run of the corpus


def test_sequential_rows_continue_across_minibatches():
    loader = SeqDataLoader(CORPUS, 4, 7, "sequential", seed=3)
    for _ in range(3):  # several epochs, each with its own offset
        batches = list(loader)
        assert len(batches) >= 30
        for (X1, _), (X2, _) in zip(batches, batches[1:], strict=False):
            assert torch.equal(X2[:, 0], X1[:, -1] + 1)


def test_random_sampling_covers_each_subsequence_at_most_once():
    loader = SeqDataLoader(CORPUS, 4, 7, "random", seed=5)
    for _ in range(3):
        starts = [int(s) for X, _ in loader for s in X[:, 0]]
        assert len(starts) == len(set(starts))
        offset = starts[0] % 7
        assert all(s % 7 == offset for s in starts)  # non-overlapping grid of num_steps


def test_same_seed_same_minibatches_and_other_seed_differs():
    def run(seed):
        loader = SeqDataLoader(CORPUS, 4, 7, "random", seed=seed)
        return [X.tolist() for _ in range(2) for X, _ in loader]

    assert run(11) == run(11)
    assert run(11) != run(12)


@pytest.mark.parametrize("sampling", ["sequential", "random"])
def test_len_is_the_number_of_minibatches_of_the_next_pass(sampling):
    loader = SeqDataLoader(list(range(997)), 5, 9, sampling, seed=0)
    for _ in range(20):
        expected = len(loader)
        assert expected == len(list(loader))


@pytest.mark.parametrize("sampling", ["sequential", "random"])
def test_recipe_gives_eight_minibatches_every_epoch(recipe_corpus, sampling):
    loader = SeqDataLoader(recipe_corpus.corpus, 32, 35, sampling, seed=0)
    for _ in range(10):
        assert len(loader) == 8
        assert [tuple(X.shape) for X, _ in loader] == [(32, 35)] * 8


def test_sequential_offset_reaches_num_steps_as_in_the_book():
    # The book draws randint(0, num_steps), both ends included: offset num_steps must occur.
    loader = SeqDataLoader(CORPUS, 4, 3, "sequential", seed=0)
    offsets = {int(next(iter(loader))[0][0, 0]) for _ in range(200)}
    assert offsets == {0, 1, 2, 3}


@pytest.mark.parametrize("sampling", ["sequential", "random"])
def test_too_short_text_is_refused_with_sizes(sampling):
    need = min_tokens(8, 10, sampling)
    SeqDataLoader(list(range(need)), 8, 10, sampling, seed=0)  # just enough
    b, t = largest_fit(need - 1, 8, 10, sampling)
    with pytest.raises(ValueError, match=f"too few for one minibatch.*batch_size at most {b}.*num_steps at most {t}"):
        SeqDataLoader(list(range(need - 1)), 8, 10, sampling, seed=0)
    assert min_tokens(b, 10, sampling) <= need - 1 < min_tokens(b + 1, 10, sampling)
    assert min_tokens(8, t, sampling) <= need - 1 < min_tokens(8, t + 1, sampling)


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="batch_size"):
        SeqDataLoader(CORPUS, 0, 5)
    with pytest.raises(ValueError, match="sampling"):
        SeqDataLoader(CORPUS, 2, 5, "shuffled")
