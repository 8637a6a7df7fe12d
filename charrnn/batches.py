"""The book's two minibatch iterators (D2L 8.3.4), seeded and on any device.

Sequential partitioning lays the corpus into `batch_size` rows and walks them in windows of
`num_steps`, so row i of minibatch k+1 continues row i of minibatch k and the hidden state can be
carried across minibatches::

    corpus:  a b c d e f g h i j k l m n o p q r s t u v w x   (offset drawn, tail dropped)
    rows:    a b c d e f g h i j k l          minibatch 1 | minibatch 2
             m n o p q r s t u v w x            [a b c]   |   [d e f]   ...
                                                [m n o]   |   [p q r]

Random sampling cuts the corpus into non-overlapping subsequences of `num_steps`, shuffles their
starts and groups `batch_size` of them per minibatch; neighbouring minibatches are unrelated.

Y is always X shifted by one token. Both iterators draw a fresh random offset every epoch, as the
book's do. The book's sequential iterator draws the offset from `randint(0, num_steps)` with the
upper end INCLUDED (an off-by-one against the random iterator's `0..num_steps-1`); we keep it, as
it only ever drops one more leading token and changes no published figure.
"""

import random

import torch

SAMPLINGS = ("sequential", "random")


class SeqDataLoader:
    """Yields (X, Y) minibatches of shape (batch_size, num_steps) as int64 tensors on `device`.

    ``len(loader)`` is the exact number of minibatches the next pass will yield: the epoch's
    random offset is drawn before the pass, in the same order of draws as the book.
    """

    def __init__(
        self,
        corpus,
        batch_size: int,
        num_steps: int,
        sampling: str = "sequential",
        seed: int | None = None,
        device="cpu",
    ):
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, not {sampling!r}")
        for field, value in (("batch_size", batch_size), ("num_steps", num_steps)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{field} must be a positive integer, not {value!r}")
        self.batch_size, self.num_steps, self.sampling = batch_size, num_steps, sampling
        self.tokens = torch.as_tensor(corpus, dtype=torch.long, device=device)
        self.rng = random.Random(seed)
        self.device = self.tokens.device
        need = min_tokens(batch_size, num_steps, sampling)
        if len(self.tokens) < need:
            raise ValueError(
                f"the corpus has {len(self.tokens):,} tokens, too few for one minibatch of "
                f"batch_size {batch_size} x num_steps {num_steps} ({sampling} needs {need:,}); "
                f"{fit_hint(len(self.tokens), batch_size, num_steps, sampling)}, or use more text (max_tokens)"
            )
        self._offset = self._draw_offset()

    def state_dict(self) -> dict:
        """Where the iterator stands between passes: its RNG and the next pass's offset."""
        version, internal, gauss = self.rng.getstate()
        return {"rng": [version, list(internal), gauss], "offset": self._offset}

    def load_state_dict(self, state: dict) -> None:
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self._offset = int(state["offset"])

    def _draw_offset(self) -> int:
        high = self.num_steps if self.sampling == "sequential" else self.num_steps - 1
        return self.rng.randint(0, high)

    def __len__(self) -> int:
        n = len(self.tokens) - self._offset - 1
        if self.sampling == "sequential":
            return (n // self.batch_size) // self.num_steps
        return (n // self.num_steps) // self.batch_size

    def __iter__(self):
        offset, n = self._offset, len(self)
        if self.sampling == "sequential":
            batches = self._sequential(offset, n)
        else:
            batches = self._random(offset, n)
        # Draw the next epoch's offset now, so that a pass abandoned half-way (a stopped run)
        # still moves on; the order of draws stays the book's: offset, shuffle, offset, ...
        self._offset = self._draw_offset()
        return iter(batches)

    def _sequential(self, offset: int, num_batches: int):
        b, t = self.batch_size, self.num_steps
        num_tokens = ((len(self.tokens) - offset - 1) // b) * b
        Xs = self.tokens[offset : offset + num_tokens].reshape(b, -1)
        Ys = self.tokens[offset + 1 : offset + 1 + num_tokens].reshape(b, -1)
        batches = [(Xs[:, i : i + t], Ys[:, i : i + t]) for i in range(0, t * num_batches, t)]
        return batches

    def _random(self, offset: int, num_batches: int):
        b, t = self.batch_size, self.num_steps
        num_subseqs = (len(self.tokens) - offset - 1) // t
        starts = list(range(offset, offset + num_subseqs * t, t))
        self.rng.shuffle(starts)
        starts = torch.tensor(starts[: b * num_batches], device=self.device).reshape(num_batches, b, 1)
        window = torch.arange(t, device=self.device)
        return [(self.tokens[s + window], self.tokens[s + window + 1]) for s in starts]


def min_tokens(batch_size: int, num_steps: int, sampling: str = "sequential") -> int:
    """Fewest tokens that give one minibatch whatever offset is drawn."""
    if sampling == "sequential":
        return batch_size * num_steps + num_steps + 1
    return batch_size * num_steps + num_steps


def largest_fit(num_tokens: int, batch_size: int, num_steps: int, sampling: str = "sequential") -> tuple[int, int]:
    """The largest batch_size (keeping num_steps) and num_steps (keeping batch_size) that fit."""
    extra = 1 if sampling == "sequential" else 0  # min_tokens = b*t + t + extra
    return max(0, (num_tokens - num_steps - extra) // num_steps), max(0, (num_tokens - extra) // (batch_size + 1))


def fit_hint(num_tokens: int, batch_size: int, num_steps: int, sampling: str) -> str:
    """What would fit, in words: the largest batch_size and num_steps for this text."""
    b, t = largest_fit(num_tokens, batch_size, num_steps, sampling)
    options = []
    if b >= 1:
        options.append(f"batch_size at most {b} (with num_steps {num_steps})")
    if t >= 1:
        options.append(f"num_steps at most {t} (with batch_size {batch_size})")
    return "use " + " or ".join(options) if options else "the text is too short for any minibatch"
