"""Checkpoints as plain dicts that load with `torch.load(..., weights_only=True)`.

A checkpoint holds the state dict, the vocab's tokens in index order, the model and training
configs, the corpus fingerprint and the history. No pickled module is ever written or read, so a
file crafted to run code on load is refused by the loader.
"""

import pickle
from dataclasses import asdict
from pathlib import Path

import torch

from charrnn.files import atomic_write
from charrnn.model import ModelConfig, RNNScratch
from charrnn.vocab import Vocab

FORMAT = "charrnn-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded, with a message naming the file and the problem."""


def make_checkpoint(
    model: RNNScratch, vocab: Vocab, train_config=None, corpus=None, history=(), state_dict=None, **extra
) -> dict:
    """The checkpoint dict; `state_dict` (default: the model's own) may be an earlier copy of its
    weights; `extra` holds plain values such as the epoch and the iterator's state."""
    return {
        **extra,
        "format": FORMAT,
        "model_config": asdict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in (state_dict or model.state_dict()).items()},
        "vocab": list(vocab.idx_to_token),
        "train_config": asdict(train_config) if train_config is not None else None,
        "corpus": corpus,
        "history": [asdict(h) if not isinstance(h, dict) else h for h in history],
    }


def save_checkpoint(
    path, model: RNNScratch, vocab: Vocab, train_config=None, corpus=None, history=(), state_dict=None, **extra
) -> Path:
    """Write atomically: a temporary file in the same folder, fsync, then rename."""
    ckpt = make_checkpoint(model, vocab, train_config, corpus, history, state_dict, **extra)
    return atomic_write(path, lambda f: torch.save(ckpt, f))


def read_checkpoint(source) -> dict:
    """Load and check a checkpoint dict from a path or a file-like object (an upload)."""
    name = getattr(source, "name", str(source))
    try:
        ckpt = torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise CheckpointError(f"No checkpoint at {name}; check the path.") from e
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{name} was refused: it is not a plain charrnn checkpoint (a damaged file, or one that would "
            "need to run code to load, which is never allowed)."
        ) from e
    except Exception as e:  # truncated zip, random bytes, ...
        raise CheckpointError(f"{name} is not a readable checkpoint ({type(e).__name__}); is the file complete?") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{name} is not a charrnn checkpoint (format {FORMAT} expected).")
    return ckpt


def load_checkpoint(source, device="cpu") -> tuple[RNNScratch, Vocab, dict]:
    """(model, vocab, checkpoint dict) from a checkpoint file; the model is in eval mode on `device`."""
    ckpt = read_checkpoint(source)
    name = getattr(source, "name", str(source))
    try:
        config = ModelConfig(**ckpt["model_config"])
        vocab = Vocab.from_tokens(ckpt["vocab"])
        if len(vocab) != config.vocab_size:
            raise CheckpointError(
                f"{name}: its vocab has {len(vocab)} tokens but its model expects {config.vocab_size}."
            )
        model = RNNScratch(config)
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{name} is damaged or from another version: {e}") from e
    return model.to(device).eval(), vocab, ckpt
