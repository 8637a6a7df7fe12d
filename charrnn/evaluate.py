"""Held-out perplexity: how well a model predicts text it never trained on (the book reports none).

Definition, the same everywhere in charrnn: the model reads the held-out slice as one stream (batch 1)
from a zero state, predicting each char from the chars before it in the slice, so chars 2..N are
predicted; the held-out perplexity is exp(mean cross-entropy of those N - 1 predictions). No
gradient, float32. The stream is fed in chunks that carry the state, which computes the same numbers
as one pass while bounding the memory the logits take.
"""

import math
import sys

import torch
from torch.nn import functional as F

from charrnn.models import evaluating

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
    total = torch.zeros((), dtype=torch.float64, device=device)
    with evaluating(model):  # no dropout: the model as it predicts
        state = model.begin_state(batch_size=1, device=device)
        for start in range(0, len(tokens) - 1, CHUNK_STEPS):
            X = tokens[start : start + CHUNK_STEPS].unsqueeze(0)  # (1, steps): the inputs
            Y = tokens[start + 1 : start + 1 + CHUNK_STEPS]  # (steps,): the chars they predict
            X = X[:, : len(Y)]  # the last chunk has no target for the slice's last char
            logits, state = model(X, state)  # (steps * 1, vocab): time-major is stream order at batch 1
            total += F.cross_entropy(logits.float(), Y, reduction="sum").double()
    return total.item() / (len(tokens) - 1)  # the one host sync


def heldout_perplexity(model, val_indices, device) -> float:
    """exp(mean held-out cross-entropy); inf when it overflows (see the module docstring)."""
    return perplexity(heldout_loss(model, val_indices, device))
