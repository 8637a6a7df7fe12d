"""charrnn: the character-level RNNs of Dive into Deep Learning (8.5's RNN, chapter 9's GRU, LSTM and deep RNNs),
from scratch and concise, trained as the book trains them and judged on held-out text.

The public library, in the order a script uses it: a text (`load_corpus`, `split_heldout`), a model
(`ModelConfig`, `make_model`), its training (`TrainConfig`, `train`; `train_recorded` keeps the run in a
`RunStore`, the same store the app and the CLI use), continuations (`generate`, `predict`), held-out perplexity
(`heldout_perplexity`) beside the n-gram yardstick (`baseline`), and checkpoint files (`save_checkpoint`,
`load_checkpoint`). The packages: `models/`, `runs/`, `tune/`, `bench/`, `cli/`.

Importing the package does nothing: no downloads, no device probing, no streamlit; SQLAlchemy and Alembic load
only when `RunStore` or `train_recorded` is first used (a GPU check needs torch alone).
"""

import importlib

from charrnn.baseline import baseline
from charrnn.batches import SeqDataLoader
from charrnn.data import Corpus, CorpusError, load_corpus, split_heldout
from charrnn.device import resolve_device
from charrnn.evaluate import heldout_perplexity
from charrnn.generate import GenerateResult, generate, predict
from charrnn.models import ModelConfig, ScratchModel, make_model
from charrnn.runs.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from charrnn.train import EpochStats, TrainConfig, TrainResult, train
from charrnn.vocab import Vocab

__all__ = [
    "CheckpointError",
    "Corpus",
    "CorpusError",
    "EpochStats",
    "GenerateResult",
    "ModelConfig",
    "RunStore",
    "ScratchModel",
    "SeqDataLoader",
    "TrainConfig",
    "TrainResult",
    "Vocab",
    "baseline",
    "generate",
    "heldout_perplexity",
    "load_checkpoint",
    "load_corpus",
    "make_model",
    "predict",
    "resolve_device",
    "save_checkpoint",
    "split_heldout",
    "train",
    "train_recorded",
]

_STORE = {"RunStore": "charrnn.runs.store", "train_recorded": "charrnn.runs.recorder"}


def __getattr__(name: str):
    """The run store's names, imported on first use (PEP 562)."""
    if name in _STORE:
        return getattr(importlib.import_module(_STORE[name]), name)
    raise AttributeError(f"module 'charrnn' has no attribute {name!r}")
