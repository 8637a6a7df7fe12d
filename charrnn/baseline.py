"""The counting yardstick: a character n-gram model, smoothed properly, scored on held-out text exactly as a
network is (`charrnn.evaluate`'s one definition).

D2L 8.3 counts unigrams to trigrams but trains no n-gram model. Here an order-N model predicts a char from the
N - 1 chars before it by interpolated smoothing (Chen & Goodman 1998), recursively down to a uniform
distribution over the vocab::

    P_k(c | h) = max(n(h c) - D, 0) / n(h .)  +  D * N1+(h .) / n(h .) * P_{k-1}(c | h')

where h is the last k - 1 chars, h' drops its first char, n(h c) counts h followed by c in the training text,
n(h .) counts h followed by anything, and N1+(h .) is how many distinct chars follow h. A context never seen
hands all its mass to the order below. "absolute" is interpolated absolute discounting. "kneser-ney" is its
interpolated Kneser-Ney form: every order but the highest counts, instead of n(h c), the number of distinct
chars that precede h c (how many contexts a string continues, not how often it occurs).

Held-out perplexity: chars 2..N of the held-out slice, each predicted from the chars before it inside the slice
(at most order - 1 of them), exp of the mean cross-entropy, as for every network in the studio.
"""

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache

SMOOTHINGS = ("absolute", "kneser-ney")
DISCOUNT = 0.75  # D: the usual choice for absolute discounting and Kneser-Ney
MAX_ORDER = 12  # beyond this the text has seen almost no context twice; the table only grows
# The n-grams a model may count (training chars x order): the tables take ~300 bytes each (the whole Time Machine
# at order 12, 1.8 million, fills 550 MB), so this keeps one under ~1.2 GB.
MAX_COUNTED = 4_000_000


@dataclass(frozen=True)
class NGramModel:
    """Counts of an order-`order` model: per order k (1..order), context (a tuple of k - 1 tokens) -> Counter."""

    order: int
    vocab_size: int
    counts: tuple  # counts[k - 1][context] = (Counter of next tokens, their total)
    discount: float = DISCOUNT

    def prob(self, context: tuple, token: int) -> float:
        """P(token | the last order - 1 tokens of context), interpolated down to the uniform distribution."""
        p = 1.0 / self.vocab_size
        for following, total in self._levels(context):
            p = max(following.get(token, 0) - self.discount, 0) / total + self.discount * len(following) / total * p
        return p

    def distribution(self, context: tuple) -> list[float]:
        """P(c | the last order - 1 tokens of context) for every token c of the vocab, as `prob` gives each."""
        p = [1.0 / self.vocab_size] * self.vocab_size
        for following, total in self._levels(context):
            lower = self.discount * len(following) / total
            p = [lower * q for q in p]
            for token, n in following.items():
                p[token] += max(n - self.discount, 0) / total
        return p

    def _levels(self, context: tuple):
        """(the counts of what follows, their total) for each order from 1 up whose context was seen; an unseen
        context hands all its mass to the order below, so it is skipped."""
        for k in range(1, self.order + 1):
            if k - 1 > len(context):
                break
            h = tuple(context[len(context) - (k - 1) :]) if k > 1 else ()
            following, total = self.counts[k - 1].get(h, (None, 0))
            if total:
                yield following, total


def check_order(order, train_length: int) -> None:
    """ValueError naming `order` unless it is a whole number from 1 to MAX_ORDER that the training text can hold."""
    if not isinstance(order, int) or isinstance(order, bool) or not 1 <= order <= MAX_ORDER:
        raise ValueError(f"order must be a whole number from 1 to {MAX_ORDER}, not {order!r}")
    if order > train_length:
        raise ValueError(
            f"order {order} is longer than the training text ({train_length:,} chars); lower order or use more text"
        )
    if order * train_length > MAX_COUNTED:
        raise ValueError(
            f"order {order} on {train_length:,} training chars would count {order * train_length:,} n-grams, over "
            f"the {MAX_COUNTED:,} whose tables fit in memory; lower order or max_tokens"
        )


def fit(tokens: list[int], order: int, vocab_size: int, smoothing: str = "absolute") -> NGramModel:
    """Count every n-gram of length 1..order in `tokens` (the training slice)."""
    if smoothing not in SMOOTHINGS:
        raise ValueError(f"smoothing must be one of {', '.join(SMOOTHINGS)}, not {smoothing!r}")
    check_order(order, len(tokens))
    counts = [defaultdict(Counter) for _ in range(order)]
    seq = tuple(tokens)
    for k in range(1, order + 1):
        table = counts[k - 1]
        if smoothing == "kneser-ney" and k < order:  # continuation counts: distinct chars before h c
            seen = {seq[i - 1 : i + k] for i in range(1, len(seq) - k + 1)}
            for gram in seen:
                table[gram[1:-1]][gram[-1]] += 1
        else:
            for i in range(len(seq) - k + 1):
                table[seq[i : i + k - 1]][seq[i + k - 1]] += 1
    totals = tuple({h: (c, sum(c.values())) for h, c in t.items()} for t in counts)  # summed once, not per query
    return NGramModel(order, vocab_size, totals)


def heldout_loss(model: NGramModel, val: list[int]) -> float:
    """Mean cross-entropy of chars 2..N of `val`, each from at most order - 1 chars before it inside `val`."""
    if len(val) < 2:
        raise ValueError(f"the held-out text has {len(val)} chars; it needs at least 2 to predict one")
    total = 0.0
    for i in range(1, len(val)):
        context = tuple(val[max(0, i - model.order + 1) : i])
        total -= math.log(model.prob(context, val[i]))
    return total / (len(val) - 1)


@dataclass
class Baseline:
    order: int
    smoothing: str
    train_length: int
    val_length: int
    val_perplexity: float


@lru_cache(maxsize=64)
def _cached(train: tuple, val: tuple, order: int, vocab_size: int, smoothing: str) -> float:
    return math.exp(heldout_loss(fit(list(train), order, vocab_size, smoothing), list(val)))


def baseline(train: list[int], val: list[int], order: int, vocab_size: int, smoothing: str = "absolute") -> Baseline:
    """The order-`order` model fitted on `train`, scored on `val`; cached per (text, split, order, smoothing)."""
    check_order(order, len(train))
    ppl = _cached(tuple(train), tuple(val), order, vocab_size, smoothing)
    return Baseline(order, smoothing, len(train), len(val), ppl)
