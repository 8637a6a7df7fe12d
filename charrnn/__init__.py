"""charrnn: the character-level RNN of Dive into Deep Learning, section 8.5, from scratch.

Importing the package does nothing: no downloads, no device probing, no streamlit.
"""

from charrnn.batches import SeqDataLoader
from charrnn.data import Corpus, CorpusError, load_corpus
from charrnn.device import resolve_device
from charrnn.generate import GenerateResult, generate, predict
from charrnn.models import ScratchModel
from charrnn.runs.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from charrnn.train import EpochStats, TrainConfig, TrainResult, train
from charrnn.vocab import Vocab

__all__ = [
    "CheckpointError",
    "Corpus",
    "CorpusError",
    "EpochStats",
    "GenerateResult",
    "ScratchModel",
    "SeqDataLoader",
    "TrainConfig",
    "TrainResult",
    "Vocab",
    "generate",
    "load_checkpoint",
    "load_corpus",
    "predict",
    "resolve_device",
    "save_checkpoint",
    "train",
]
