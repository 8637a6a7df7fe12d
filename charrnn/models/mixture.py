"""A network mixed with the counting model of its own training text (the n-gram of `charrnn.baseline`).

The oldest trick of language modelling (Jelinek and Mercer 1980; Mikolov's RNNLM toolkit ships it): a
network and an n-gram make different mistakes, so a weighted mean of their predictions beats both::

    P(c | h) = (1 - w) * P_network(c | h) + w * P_ngram(c | the last order - 1 chars of h)

w is `ModelConfig.ngram_weight`, the n-gram's share. The n-gram is interpolated Kneser-Ney, counted on the
training slice only (held-out text is never counted), and the network trains alone, as it would without the
mix: only its predictions are mixed, wherever the model predicts (held-out evaluation, samples, Generate).
A checkpoint keeps the training tokens the n-gram is counted from, so a model can be loaded without its text.
"""

import math
from functools import lru_cache

import torch

from charrnn.baseline import NGramModel, check_order, fit

SMOOTHING = "kneser-ney"  # the better of the two on The Time Machine (its 7-gram: 4.31 against 5.0)


class NGramMix:
    """The n-gram half of a mixed model: its order and share, the tokens it counts, and its predictions."""

    def __init__(self, tokens, order: int, weight: float, vocab_size: int):
        try:
            check_order(order, len(tokens))
        except ValueError as e:  # the same limits, in the field's own name
            raise ValueError(f"ngram_{e}".replace("lower order", "lower ngram_order")) from None
        self.tokens = torch.as_tensor(tokens).to("cpu", _token_dtype(vocab_size)).contiguous()
        self.order, self.weight, self.vocab_size = order, weight, vocab_size
        self._table: NGramModel | None = None
        self._targets: dict[tuple, torch.Tensor] = {}

    @property
    def table(self) -> NGramModel:
        """The counts, made once per (tokens, order, vocab) in this process (a reload makes no new table), and kept
        here: generation asks for them at every step."""
        if self._table is None:
            self._table = _fit(self.tokens.numpy().tobytes(), str(self.tokens.dtype), self.order, self.vocab_size)
        return self._table

    def context(self, history) -> tuple:
        """The last order - 1 tokens of `history`, the n-gram's context."""
        return tuple(history[max(0, len(history) - self.order + 1) :])

    def target_probs(self, tokens: list[int]) -> torch.Tensor:
        """P_ngram(tokens[i] | the tokens before it inside `tokens`) for i = 1..N-1, as float64 (cached per text:
        a run evaluates the same held-out slice every epoch)."""
        key = tuple(tokens)
        if key not in self._targets:
            table, n = self.table, self.order - 1
            probs = [table.prob(key[max(0, i - n) : i], key[i]) for i in range(1, len(key))]
            self._targets[key] = torch.tensor(probs, dtype=torch.float64)
        return self._targets[key]

    def mixed_loss(self, network_loss: torch.Tensor, ngram_probs: torch.Tensor) -> torch.Tensor:
        """-log P of the mixture per position, from the network's cross-entropy and the n-gram's P of the targets."""
        network = torch.exp(-network_loss.double())
        return -torch.log((1 - self.weight) * network + self.weight * ngram_probs.to(network.device))

    def mixed_logits(self, logits: torch.Tensor, history) -> torch.Tensor:
        """log P of the mixture over the vocab after `history` (the tokens so far), from the network's logits for
        the next token: usable as logits (softmax of it is the mixture)."""
        network = torch.softmax(logits.to("cpu", torch.float64), dim=-1)
        ngram = torch.tensor(self.table.distribution(self.context(history)), dtype=torch.float64)
        return torch.log((1 - self.weight) * network + self.weight * ngram)

    def describe(self) -> str:
        return f"mixed with its text's {self.order}-gram at {self.weight:g}"


def _token_dtype(vocab_size: int) -> torch.dtype:
    """The smallest integer type that holds every token: a checkpoint keeps the text in a few hundred KB."""
    return torch.uint8 if vocab_size <= 256 else torch.int16 if vocab_size <= 2**15 else torch.int32


@lru_cache(maxsize=4)
def _fit(data: bytes, dtype: str, order: int, vocab_size: int) -> NGramModel:
    tokens = torch.frombuffer(bytearray(data), dtype=getattr(torch, dtype.removeprefix("torch."))).tolist()
    return fit(tokens, order, vocab_size, SMOOTHING)


def attach(model: torch.nn.Module, tokens) -> torch.nn.Module:
    """Give `model` the n-gram its config asks for (`ngram_order` > 0), counted on `tokens` (its training text);
    a model whose config asks for none is left as it is."""
    config = model.config
    if config.ngram_order and getattr(model, "ngram", None) is None:
        model.ngram = NGramMix(tokens, config.ngram_order, config.ngram_weight, config.vocab_size)
    return model


def mixture(model) -> NGramMix | None:
    """The model's n-gram half, or None for a network that predicts alone."""
    return getattr(model, "ngram", None)


def check(order, weight, max_order: int) -> None:
    """ValueError naming ngram_order or ngram_weight and the fix, unless they make a mix or none."""
    if not isinstance(order, int) or isinstance(order, bool) or not 0 <= order <= max_order:
        raise ValueError(f"ngram_order must be 0 (no mix) or a whole number from 1 to {max_order}, not {order!r}")
    number = isinstance(weight, (int, float)) and not isinstance(weight, bool) and math.isfinite(weight)
    if not number or not 0 <= weight < 1:
        raise ValueError(f"ngram_weight must be the n-gram's share, from 0 (none) to below 1, not {weight!r}")
    if order and not weight:
        raise ValueError(f"ngram_order {order} mixes in an n-gram at ngram_weight 0; give it a share such as 0.4")
    if weight and not order:
        raise ValueError(f"ngram_weight {weight} has no n-gram to mix in; set ngram_order (such as 7) or weight 0")
