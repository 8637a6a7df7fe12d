"""Named recipes that fill a run's settings: the book's runs (8.5, 9.1, 9.2, 9.3) and the studio's whole-text
recipe. A preset is a TrainConfig's fields; any field the user gives after it overrides it."""

from charrnn.reproduce import CHAPTER_9
from charrnn.train import TrainConfig

_BY_NAME = {e.name: e.overrides for e in CHAPTER_9}

PRESETS = {
    "book-rnn": {},  # 8.5's recipe: TrainConfig's defaults
    "book-gru": _BY_NAME["scratch GRU"],
    "book-lstm": _BY_NAME["scratch LSTM"],
    "book-deep-lstm": _BY_NAME["deep nn.LSTM, 2 layers"],
    # The whole text, the last 10% held out: a concise LSTM whose recurrent weights are masked per minibatch
    # (weight drop) as well as its outputs (dropout), trained by Adam in long windows with the lr annealed to
    # 0 by the last epoch, evaluated every epoch and kept at its best; it predicts mixed with the Kneser-Ney 7-gram
    # of its training text (charrnn.models.mixture). The README's "Beat counting" says what it reaches, in what
    # time, and how it was found.
    "whole-text": {
        "max_tokens": 0,
        "model": "concise",
        "cell": "lstm",
        "num_hiddens": 512,
        "dropout": 0.5,
        "weight_drop": 0.6,
        "optimizer": "adam",
        "lr": 0.004,
        "lr_schedule": "cosine",
        "batch_size": 32,
        "num_steps": 100,
        "clip": 1.0,
        "num_epochs": 160,
        "eval_every": 1,
        "ngram_order": 7,
        "ngram_weight": 0.4,
    },
}


def preset(name: str) -> dict:
    """The fields of preset `name`, or ValueError naming the choices."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, not {name!r}")
    fields = dict(PRESETS[name])
    TrainConfig(**fields).validate()  # a preset is always a valid recipe
    return fields
