"""Continuing a prefix (D2L 8.5.4 `predict_ch8`), greedily as the book does, or by sampling."""

import math
import re
from dataclasses import dataclass, field

import torch

from charrnn.models import evaluating, mixture

MAX_PREDS = 10_000
MAX_PREFIX = 10_000  # characters; the warm-up is one forward pass over the whole prefix


@dataclass
class GenerateResult:
    prefix: str  # the prefix as given
    generated: str  # the new characters only
    unknown: list[str] = field(default_factory=list)  # prefix chars not in the vocab (fed as <unk>)

    @property
    def text(self) -> str:
        return self.prefix + self.generated


@torch.no_grad()
def generate(
    model,
    vocab,
    prefix: str,
    num_preds: int = 50,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int | None = None,
    device=None,
) -> GenerateResult:
    """Warm up on `prefix` from a zero state, then produce `num_preds` characters.

    temperature 0 is the book's greedy decoding (argmax). temperature > 0 samples from
    softmax(logits / temperature), restricted to the `top_k` most likely characters when given;
    `<unk>` is never sampled (it is not a character). `seed` makes sampling reproducible.
    """
    check_prefix(prefix)
    if not isinstance(num_preds, int) or not 0 <= num_preds <= MAX_PREDS:
        raise ValueError(f"num_preds must be between 0 and {MAX_PREDS:,}, not {num_preds!r}")
    check_temperature(temperature)
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be a positive integer or empty, not {top_k}")
    device = device or next(model.parameters()).device
    generator = torch.Generator()  # sampling runs on the CPU (see pick): one seed, one text, on every device
    if seed is not None:
        generator.manual_seed(seed)
    unknown = sorted({ch for ch in prefix if ch not in vocab})

    idx, out = vocab.encode(prefix), []
    with evaluating(model):  # no dropout while generating
        state = model.begin_state(batch_size=1, device=device)
        # Warm-up: every prefix char but the last only updates the state; the last one's output
        # gives the first prediction (the book feeds prefix[-1] as the first input of the loop).
        if len(idx) > 1:
            _, state = model(torch.tensor([idx[:-1]], device=device), state)
        last, mix, history = idx[-1], mixture.mixture(model), list(idx)  # history: the n-gram's context
        for _ in range(num_preds):
            logits, state = model(torch.tensor([[last]], device=device), state)
            scores = mix.mixed_logits(logits[-1], history) if mix else logits[-1]
            last = pick(scores, temperature, top_k, generator)
            out.append(last)
            history.append(last)
    return GenerateResult(prefix=prefix, generated=vocab.decode(out), unknown=unknown)


def check_prefix(prefix: str, limit: int = MAX_PREFIX, field: str = "prefix") -> None:
    if not prefix:
        raise ValueError(f"{field} is empty; type at least one character to start from")
    if len(prefix) > limit:
        raise ValueError(f"{field} is {len(prefix):,} characters; the limit is {limit:,} (shorten it)")


def check_temperature(temperature: float) -> None:
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be 0 (greedy) or a positive finite number, not {temperature!r}")


def next_char_probs(model, vocab, text: str, temperature: float = 1.0, device=None) -> torch.Tensor:
    """Probabilities of the next character after warming up on `text` (for the Generate page);
    temperature 0 puts all the mass on the greedy choice. `text` is a prefix plus what was generated
    from it, so it may hold up to MAX_PREFIX + MAX_PREDS characters."""
    check_prefix(text, MAX_PREFIX + MAX_PREDS, "text")
    check_temperature(temperature)
    device = device or next(model.parameters()).device
    idx, mix = vocab.encode(text), mixture.mixture(model)
    with torch.no_grad(), evaluating(model):
        logits, _ = model(torch.tensor([idx], device=device), model.begin_state(1, device))
    logits = mix.mixed_logits(logits[-1], idx) if mix else logits[-1].to("cpu", torch.float64)
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(), logits.numel()).float()
    return torch.softmax(tempered(logits, temperature), dim=-1).float()


def tempered(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / temperature shifted so that the largest is 0: exact for any positive finite temperature.

    Subtracting the max FIRST means the division can only shrink numbers towards 0 or push them to -inf
    (never to +inf or NaN), so softmax stays defined from temperature 1e-300 (the argmax) to 1e300 (uniform).
    Works in float64 so the temperature itself does not round to 0 or inf.
    """
    logits = logits.to(torch.float64)
    if not torch.isfinite(logits.max()):  # max is NaN when any score is
        raise ValueError("the model's next-character scores hold NaN or infinite values; load another model")
    return (logits - logits.max()) / temperature


def pick(logits: torch.Tensor, temperature: float, top_k: int | None, generator) -> int:
    """The next index: the argmax at temperature 0 (the book), else a draw from softmax(logits / temperature)."""
    if temperature == 0:
        return int(logits.argmax())
    logits = logits.to("cpu", torch.float64, copy=True)  # V numbers: cheap to move, exact in float64
    logits[0] = float("-inf")  # never sample <unk>
    logits = tempered(logits, temperature)
    if top_k is not None and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def predict(model, vocab, prefix: str, num_preds: int = 50, device=None) -> str:
    """The book's `predict_ch8`: prefix + greedy continuation."""
    return generate(model, vocab, prefix, num_preds, device=device).text


def words_seen(generated: str, reference: str) -> tuple[int, int]:
    """(how many of `generated`'s whole words occur in `reference`, how many whole words it has): a check that
    a model writes words it learned rather than noise, and a hint of memorising when every long word is one.
    Words are runs of letters, lowercased; a word cut by either end of `generated` is not counted."""
    known = set(re.findall(r"[a-z]+", reference.lower()))
    inner = re.sub(r"^[a-z]+|[a-z]+$", "", generated.lower())  # the first and last words may be cut off
    words = re.findall(r"[a-z]+", inner)
    return sum(w in known for w in words), len(words)
