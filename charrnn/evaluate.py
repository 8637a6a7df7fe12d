"""Held-out perplexity: how well a model predicts text it never trained on (the book reports none).

Definition, the same everywhere in charrnn: the model reads the held-out slice as one stream (batch 1)
from a zero state, predicting each char from the chars before it in the slice, so chars 2..N are
predicted; the held-out perplexity is exp(mean cross-entropy of those N - 1 predictions). No
gradient, float32. The stream is fed in chunks that carry the state, which computes the same numbers
as one pass while bounding the memory the logits take. A model mixed with an n-gram
(`charrnn.models.mixture`) is scored on its mixed predictions, the n-gram reading the same chars before
each one inside the slice.
"""

import math
import sys

import torch
from torch.nn import functional as F

from charrnn.models import evaluating, mixture

# Past this mean loss exp() overflows a float64: the perplexity is infinite (the book's
# `math.exp` raises OverflowError there) and a training run is called diverged. With lr = 100 and no
# clipping the loss stays finite in float32 (tanh bounds the state) but passes this at once.
MAX_LOSS = math.log(sys.float_info.max)
CHUNK_STEPS = 1024  # time steps per forward call


def perplexity(mean_loss: float) -> float:
    """exp(mean cross-entropy), infinite where it overflows or the loss is not a number."""
    return math.exp(mean_loss) if mean_loss < MAX_LOSS else math.inf


@torch.no_grad()
def heldout_loss(model, val_indices, device) -> float:
    """Mean cross-entropy of predicting chars 2..N of `val_indices` from the chars before them."""
    if len(val_indices) < 2:
        raise ValueError(f"the held-out text has {len(val_indices)} chars; it needs at least 2 to predict one")
    tokens = torch.as_tensor(val_indices, dtype=torch.long, device=device)
    mix = mixture.mixture(model)
    ngram = mix.target_probs(list(val_indices)).to(device) if mix else None  # P_ngram of chars 2..N
    total = torch.zeros((), dtype=torch.float64, device=device)
    with evaluating(model):  # no dropout: the model as it predicts
        state = model.begin_state(batch_size=1, device=device)
        for start in range(0, len(tokens) - 1, CHUNK_STEPS):
            X = tokens[start : start + CHUNK_STEPS].unsqueeze(0)  # (1, steps): the inputs
            Y = tokens[start + 1 : start + 1 + CHUNK_STEPS]  # (steps,): the chars they predict
            X = X[:, : len(Y)]  # the last chunk has no target for the slice's last char
            logits, state = model(X, state)  # (steps * 1, vocab): time-major is stream order at batch 1
            if mix is None:
                total += F.cross_entropy(logits.float(), Y, reduction="sum").double()
            else:
                losses = F.cross_entropy(logits.float(), Y, reduction="none")
                total += mix.mixed_loss(losses, ngram[start : start + len(Y)]).sum()
    return total.item() / (len(tokens) - 1)  # the one host sync


def heldout_perplexity(model, val_indices, device) -> float:
    """exp(mean held-out cross-entropy); inf when it overflows (see the module docstring)."""
    return perplexity(heldout_loss(model, val_indices, device))


# The cadence (TrainConfig.eval_every): every N epochs, or 1/k of an epoch (k evaluations in each, the last at its
# end), so that a long epoch (the whole text is ~30 of the book's) still gives curves and pruners points.
MAX_EVALS_PER_EPOCH = 100


def check_cadence(every) -> None:
    """ValueError naming eval_every unless it is a whole number of epochs or 1/k of one."""
    number = isinstance(every, (int, float)) and not isinstance(every, bool) and math.isfinite(every)
    if number and every >= 1 and float(every).is_integer():
        return
    k = round(1 / every) if number and 0 < every < 1 else 0
    if not (2 <= k <= MAX_EVALS_PER_EPOCH and math.isclose(k * every, 1, rel_tol=1e-6)):
        raise ValueError(
            f"eval_every must be a whole number of epochs, or 1/k of one (0.5, 0.25, 0.1, ... down to "
            f"1/{MAX_EVALS_PER_EPOCH}), not {every!r}"
        )


def evals_per_epoch(every) -> int:
    """k for a cadence of 1/k epoch; 1 for one of whole epochs."""
    return round(1 / every) if every < 1 else 1


def mid_epoch_marks(every, per_epoch: int) -> set[int]:
    """The minibatch counts inside an epoch of `per_epoch` minibatches after which a cadence of 1/k epoch
    evaluates (the k-th evaluation is at the epoch's end, as for whole epochs)."""
    k = evals_per_epoch(every)
    return {round(j * per_epoch / k) for j in range(1, k)} - {0, per_epoch}


def report_step(position: float, every) -> int:
    """An evaluation's step for a pruner: its epoch for a cadence of whole epochs, else its index at k a epoch
    (`position`: epochs trained when it ran, 2.25 a quarter into the third)."""
    return round(position * evals_per_epoch(every))
