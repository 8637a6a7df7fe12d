"""Inside the network: the top layer's state and gates over a text, and the gradient through time
(D2L 8.5, 8.7, 9.1-9.3).

Two pictures of the chapters' ideas, for every model the studio trains (scratch or concise; RNN, GRU or
LSTM; any depth):
- what the top layer computes over a text from a zero state, one character per step: its hidden state
  H_t, or one of its cell's gates (a GRU's Z and R, an LSTM's I, F, O and its memory cell C), and how
  each unit tracks a simple feature of that text (Karpathy et al., "Visualizing and Understanding
  Recurrent Networks");
- the norm of the gradient of the training loss with respect to each step's top-layer H_t, which
  backpropagation through time carries back one step at a time (why the book clips; 9.1-9.2's gates
  are there to keep it from vanishing).

Both read the model's own `trace(X, state)` (the top layer step by step, in the autograd graph of the
weights, since the fast paths hide H_t and the gates) and its `head(H)`. Plain tensors and lists; no
streamlit.
"""

import re

import torch
from torch.nn import functional as F

from charrnn.batches import SeqDataLoader
from charrnn.models import evaluating, gru, lstm, rnn

MAX_TEXT = 2000  # characters: a heatmap column and a coloured span per character
MAX_UNITS = 64  # rows of the heatmap
VOWELS = frozenset("aeiouAEIOU")
# What can be shown of the top layer, named in words; each cell offers H and its own gates.
SHOWN = {
    "H": "hidden state H",
    "Z": "update gate Z",
    "R": "reset gate R",
    "I": "input gate I",
    "F": "forget gate F",
    "O": "output gate O",
    "C": "memory cell C",
}
CELL_GATES = {"rnn": rnn.GATES, "gru": gru.GATES, "lstm": lstm.GATES}


def shown_for(model) -> tuple[str, ...]:
    """What the model's top layer offers to look at: "H", then its cell's gates (keys of SHOWN)."""
    return ("H", *CELL_GATES[model.config.cell])


def value_range(show: str, states: torch.Tensor) -> tuple[float, float]:
    """The range `show`'s values can take, for a colour scale: a gate's (0, 1); H's (-1, 1) (tanh, or an
    LSTM's O * tanh(C)); an LSTM's memory cell C has no bound, so ± its largest |C| in `states`, at least 1."""
    if show not in ("H", "C"):
        return 0.0, 1.0
    top = max(1.0, float(states.abs().max())) if show == "C" else 1.0
    return -top, top


def _device(model) -> torch.device:
    return next(model.parameters()).device


def check_text(text: str) -> None:
    if not text:
        raise ValueError("text is empty; give at least one character to read")
    if len(text) > MAX_TEXT:
        raise ValueError(f"text is {len(text):,} characters; the limit is {MAX_TEXT:,} (use a shorter text)")


@torch.no_grad()
def hidden_states(model, vocab, text: str, show: str = "H") -> torch.Tensor:
    """(len(text), num_hiddens) on the CPU: the top layer's `show` (H or a gate, see `shown_for`) after
    reading text[t], from a zero state, one char per step; chars outside the vocab are read as `<unk>`
    (as Generate feeds them). No dropout: trace never drops."""
    check_text(text)
    if show not in shown_for(model):
        raise ValueError(f"show must be one of {', '.join(shown_for(model))} for a {model.config.cell}, not {show!r}")
    X = torch.tensor([vocab.encode(text)], device=_device(model))  # (1, len(text))
    steps = model.trace(X, model.begin_state(1, X.device))
    return torch.cat([seen[show] for seen in steps]).float().cpu()  # (len(text), num_hiddens)


LOSSES = ("mean", "last step")  # what the gradient is of: the training loss, or the last step's loss alone


def grad_norms_through_time(model, X: torch.Tensor, Y: torch.Tensor, state=None, loss: str = "mean") -> list[float]:
    """||dL/dH_t|| for t = 1..num_steps, H_t the top layer's hidden state, at the current weights, before
    any clipping.

    With loss "mean", L is the minibatch's mean cross-entropy as training computes it (time-major
    outputs, targets Y.T), without dropout; dL/dH_t is the total derivative, through step t's output
    and through every later step. With "last step", L is the mean cross-entropy of the last step's
    predictions only, so dL/dH_t is what reaches H_t from num_steps - t steps later: the classic picture
    of a gradient that vanishes or explodes with distance. The norm is over the whole (batch_size,
    num_hiddens) tensor. `state` is the model's state before the minibatch, in its own shape (default
    zeros). The weights and their .grad are left as they are."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
    state = model.begin_state(X.shape[0], X.device) if state is None else state
    with torch.enable_grad():
        # A leaf state that requires grad puts every H_t in the graph, whatever the weights' requires_grad.
        steps = model.trace(X, tuple(s.detach().requires_grad_() for s in state))
        Hs = [seen["H"] for seen in steps]  # num_steps of (batch_size, num_hiddens)
        if loss == "mean":
            L = F.cross_entropy(model.head(torch.cat(Hs)), Y.t().reshape(-1))  # time-major, as training
        else:
            L = F.cross_entropy(model.head(Hs[-1]), Y[:, -1])  # (batch_size, vocab_size) against Y_T
        grads = torch.autograd.grad(L, Hs)
    return [float(torch.linalg.vector_norm(g)) for g in grads]


@torch.no_grad()
def minibatch_with_state(model, indices: list[int], batch_size: int, num_steps: int, k: int, seed: int = 0):
    """(X, Y, state): the k-th (1-based) minibatch of the first epoch of the sequential iterator over
    `indices` and the state training carries into it (zeros for the first; later ones get the state
    the model, at its current weights and without dropout, leaves after the minibatches before it).
    The state has the model's own shape (whatever its kind, cell and depth): it goes back to the model."""
    device = _device(model)
    loader = SeqDataLoader(indices, batch_size, num_steps, "sequential", seed=seed, device=device)
    if not 1 <= k <= len(loader):
        raise ValueError(f"minibatch must be between 1 and {len(loader)}, not {k}")
    state = model.begin_state(batch_size, device)
    with evaluating(model):  # dropout would make the carried state a random draw
        for i, (X, Y) in enumerate(loader, 1):
            if i == k:
                return X, Y, state
            _, state = model(X, state)


# ---- features of the text, one value per character ------------------------------------------------


def _letters(text: str) -> list[bool]:
    return [ch.isalpha() for ch in text]


def inside_word(text: str) -> list[float]:
    """1 for a letter with a letter on both sides (not a word's first or last letter), else 0."""
    a = _letters(text)
    return [float(0 < i < len(a) - 1 and a[i - 1] and a[i] and a[i + 1]) for i in range(len(a))]


def after_space(text: str) -> list[float]:
    """1 for a character right after a space (the first of a word, in book mode), else 0."""
    return [float(i > 0 and text[i - 1] == " ") for i in range(len(text))]


def vowel(text: str) -> list[float]:
    """1 for a, e, i, o, u (either case), else 0."""
    return [float(ch in VOWELS) for ch in text]


def word_position(text: str) -> list[float]:
    """0 at a non-letter (a space), then 1, 2, 3, ... through each run of letters."""
    out, n = [], 0
    for is_letter in _letters(text):
        n = n + 1 if is_letter else 0
        out.append(float(n))
    return out


def space(text: str) -> list[float]:
    """1 for a space, else 0."""
    return [float(ch == " ") for ch in text]


FEATURES = {
    "inside a word": inside_word,
    "right after a space": after_space,
    "vowel": vowel,
    "position in the word": word_position,
    "space": space,
}


def feature_values(text: str, name: str) -> list[float]:
    """One value per character of `text` for the feature `name` (a key of FEATURES)."""
    if name not in FEATURES:
        raise ValueError(f"feature must be one of {', '.join(FEATURES)}, not {name!r}")
    return FEATURES[name](text)


# ---- units ----------------------------------------------------------------------------------------


def correlations(states: torch.Tensor, values) -> torch.Tensor:
    """Pearson r between each unit's values over the text and `values`: (num_hiddens,), float64.

    A unit (or a feature) that does not change over the text gets r = 0: it tells nothing."""
    Z = states.detach().to("cpu", torch.float64)  # (len(text), num_hiddens)
    v = torch.as_tensor(values, dtype=torch.float64)  # (len(text),)
    if v.shape != Z.shape[:1]:
        raise ValueError(f"{v.numel()} feature values for {Z.shape[0]} characters; give one per character")
    dZ, dv = Z - Z.mean(0), v - v.mean()
    r = (dZ * dv[:, None]).sum(0) / (dZ.square().sum(0) * dv.square().sum()).sqrt()
    constant = (Z.amax(0) == Z.amin(0)) | bool(v.max() == v.min())
    return torch.where(constant, torch.zeros_like(r), r.clamp(-1.0, 1.0))


def top_variance(states: torch.Tensor, n: int) -> list[int]:
    """The `n` units whose values vary most over the text, most first."""
    return states.var(0, correction=0).argsort(descending=True, stable=True)[:n].tolist()


def top_correlated(r: torch.Tensor, n: int) -> list[int]:
    """The `n` units with the largest |r|, largest first."""
    return r.abs().argsort(descending=True, stable=True)[:n].tolist()


def rank_everything(model, vocab, text: str, feature: str, n: int = 10) -> list[tuple[str, int, float]]:
    """The "interpretable cell" search (Karpathy, Johnson and Fei-Fei 2015): (what, unit, r) of the `n`
    units, gates and memory cells of the top layer (every key of `shown_for`) whose values over `text`
    follow `feature` (a key of FEATURES) most closely, largest |r| first."""
    values = feature_values(text, feature)
    found = []
    for show in shown_for(model):
        r = correlations(hidden_states(model, vocab, text, show), values)
        found += [(show, u, float(r[u])) for u in top_correlated(r, n)]
    return sorted(found, key=lambda f: -abs(f[2]))[:n]


def parse_units(spec: str, num_hiddens: int) -> list[int]:
    """Unit numbers from text such as "3, 17, 40-45" (0-based, as the tensors count them), in order."""
    units = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if m is None:
            raise ValueError(f"units: {part!r} is not a unit number or a range; write e.g. 3, 17, 40-45")
        lo, hi = int(m[1]), int(m[2] or m[1])
        if not lo <= hi < num_hiddens:
            raise ValueError(f"units: {part!r} is outside 0-{num_hiddens - 1}; the model has {num_hiddens} units")
        units += [u for u in range(lo, hi + 1) if u not in units]
    if not units:
        raise ValueError("units is empty; give unit numbers such as 3, 17, 40-45")
    if len(units) > MAX_UNITS:
        raise ValueError(f"units names {len(units)} units; the limit is {MAX_UNITS} (name fewer)")
    return units
