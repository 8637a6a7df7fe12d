"""Inside the network: the hidden state over a text, and the gradient through time (D2L 8.5, 8.7).

Two pictures of the chapter's two ideas, for either model kind (8.5's scratch RNN, 8.6's `nn.RNN`):
- the hidden units H_1..H_T a model computes over a text from a zero state, and how each unit tracks a
  simple feature of that text (Karpathy et al., "Visualizing and Understanding Recurrent Networks");
- the norm of the gradient of the training loss with respect to each step's hidden state H_t, which
  backpropagation through time multiplies by W_hh^T and tanh' once per step back (why the book clips).

Both run the book's recurrence written out per step, H_t = tanh(x_t W_xh + H_{t-1} W_hh + b_h),
on the model's own weights: the fast models hide H_t (the scratch model's backward is written by hand,
`nn.RNN` returns only the states, not their total gradients). Plain tensors and lists; no streamlit.
"""

import re

import torch
from torch.nn import functional as F

from charrnn.batches import SeqDataLoader

MAX_TEXT = 2000  # characters: a heatmap column and a coloured span per character
MAX_UNITS = 64  # rows of the heatmap
VOWELS = frozenset("aeiouAEIOU")


def _scratch_weights(model):
    return model.W_xh, model.W_hh, model.b_h, model.W_hq, model.b_q


def _concise_weights(model):
    # nn.RNN computes x W_ih^T + b_ih + h W_hh^T + b_hh; in the book's orientation W_xh = W_ih^T, and so on.
    rnn, head = model.rnn, model.linear
    b_h = rnn.bias_ih_l0 + rnn.bias_hh_l0
    return rnn.weight_ih_l0.t(), rnn.weight_hh_l0.t(), b_h, head.weight.t(), head.bias


# (W_xh (V, H), W_hh (H, H), b_h (H,), W_hq (H, V), b_q (V,)) of each model kind, as the book names them.
WEIGHTS = {"scratch": _scratch_weights, "concise": _concise_weights}


def book_weights(model) -> tuple[torch.Tensor, ...]:
    return WEIGHTS[model.config.kind](model)


def unroll(weights, X: torch.Tensor, H: torch.Tensor) -> list[torch.Tensor]:
    """H_1..H_T of the book's recurrence, one (batch_size, num_hiddens) tensor per step.

    X: (batch_size, num_steps) indices; H: (batch_size, num_hiddens) the state before step 1.
    one_hot(x_t) @ W_xh is row x_t of W_xh: gathered, which is exact."""
    W_xh, W_hh, b_h = weights[:3]
    states = []
    for x in X.t():  # x: (batch_size,), the t-th char of every row
        H = torch.tanh(W_xh[x] + H @ W_hh + b_h)
        states.append(H)
    return states


def check_text(text: str) -> None:
    if not text:
        raise ValueError("text is empty; give at least one character to read")
    if len(text) > MAX_TEXT:
        raise ValueError(f"text is {len(text):,} characters; the limit is {MAX_TEXT:,} (use a shorter text)")


@torch.no_grad()
def hidden_states(model, vocab, text: str, device=None) -> torch.Tensor:
    """(len(text), num_hiddens) on the CPU: H_t after reading text[t], from a zero state, one char per
    step; chars outside the vocab are read as `<unk>` (as Generate feeds them)."""
    check_text(text)
    weights = book_weights(model)
    device = device or weights[0].device
    X = torch.tensor([vocab.encode(text)], device=device)  # (1, len(text))
    H0 = torch.zeros((1, weights[1].shape[0]), device=device)
    return torch.cat(unroll(weights, X, H0)).float().cpu()  # (len(text), num_hiddens)


LOSSES = ("mean", "last step")  # what the gradient is of: the training loss, or the last step's loss alone


def grad_norms_through_time(model, X: torch.Tensor, Y: torch.Tensor, state=None, loss: str = "mean") -> list[float]:
    """||dL/dH_t|| for t = 1..num_steps, at the current weights, before any clipping.

    With loss "mean", L is the minibatch's mean cross-entropy as training computes it (time-major
    outputs, targets Y.T); dL/dH_t is the total derivative, through step t's output and through every
    later step. With "last step", L is the mean cross-entropy of the last step's predictions only, so
    dL/dH_t is what reaches H_t from num_steps - t steps later: the classic picture of a gradient that
    vanishes or explodes with distance. The norm is over the whole (batch_size, num_hiddens) tensor.
    `state` is the model's state before the minibatch (default zeros). The weights and their .grad are
    left as they are."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
    weights = book_weights(model)
    W_hq, b_q = weights[3:]
    batch_size, num_hiddens = X.shape[0], weights[1].shape[0]
    H0 = torch.zeros((batch_size, num_hiddens), device=X.device) if state is None else state[0]
    with torch.enable_grad():
        # A leaf H_0 that requires grad puts every H_t in the graph, whatever the weights' requires_grad.
        states = unroll(weights, X, H0.reshape(batch_size, num_hiddens).detach().requires_grad_())
        if loss == "mean":
            logits = torch.cat(states) @ W_hq + b_q  # (num_steps * batch_size, vocab_size), time-major
            L = F.cross_entropy(logits, Y.t().reshape(-1))
        else:
            L = F.cross_entropy(states[-1] @ W_hq + b_q, Y[:, -1])  # (batch_size, vocab_size) against Y_T
        grads = torch.autograd.grad(L, states)
    return [float(torch.linalg.vector_norm(g)) for g in grads]


@torch.no_grad()
def minibatch_with_state(model, indices: list[int], batch_size: int, num_steps: int, k: int, seed: int = 0):
    """(X, Y, state): the k-th (1-based) minibatch of the first epoch of the sequential iterator over
    `indices` and the state training carries into it (zeros for the first; later ones get the state
    the model, at its current weights, leaves after the minibatches before it)."""
    device = book_weights(model)[0].device
    loader = SeqDataLoader(indices, batch_size, num_steps, "sequential", seed=seed, device=device)
    if not 1 <= k <= len(loader):
        raise ValueError(f"minibatch must be between 1 and {len(loader)}, not {k}")
    state = model.begin_state(batch_size, device)
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
