"""The book's Vocab (D2L 8.2.3): `<unk>` at 0, reserved tokens, then tokens by frequency."""

from collections import Counter
from collections.abc import Iterable, Sequence


class Vocab:
    """Maps tokens to indices and back, exactly as d2l's `Vocab`.

    Index 0 is `<unk>`, then `reserved_tokens`, then every token seen at least `min_freq` times
    in descending frequency. The sort is stable, so ties keep the order in which tokens first
    appear. Unknown tokens map to 0.
    """

    def __init__(self, tokens: Iterable[str] = (), min_freq: int = 0, reserved_tokens=()):
        counter = Counter(tokens)
        # sorted() is stable and Counter keeps first-seen order: ties stay in text order.
        self.token_freqs = sorted(counter.items(), key=lambda x: x[1], reverse=True)
        self.idx_to_token = ["<unk>", *reserved_tokens]
        self.token_to_idx = {token: idx for idx, token in enumerate(self.idx_to_token)}
        for token, freq in self.token_freqs:
            if freq < min_freq:
                break
            if token not in self.token_to_idx:
                self.token_to_idx[token] = len(self.idx_to_token)
                self.idx_to_token.append(token)

    @classmethod
    def from_tokens(cls, idx_to_token: Sequence[str]) -> "Vocab":
        """Rebuild a vocab from its index order (as stored in a checkpoint); no counts."""
        vocab = cls()
        vocab.idx_to_token = list(idx_to_token)
        vocab.token_to_idx = {token: idx for idx, token in enumerate(vocab.idx_to_token)}
        return vocab

    unk = 0

    def __len__(self) -> int:
        return len(self.idx_to_token)

    def __getitem__(self, token: str) -> int:
        return self.token_to_idx.get(token, self.unk)

    def __contains__(self, token: str) -> bool:
        return token in self.token_to_idx

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self.token_to_idx.get(t, self.unk) for t in tokens]

    def decode(self, indices: Iterable[int]) -> str:
        return "".join(self.idx_to_token[int(i)] for i in indices)

    def frequencies(self) -> list[tuple[int, str, int]]:
        """(index, token, count) for every token in index order; reserved tokens count 0."""
        counts = dict(self.token_freqs)
        return [(i, t, counts.get(t, 0)) for i, t in enumerate(self.idx_to_token)]
