"""Checkpoints as plain dicts that load with `torch.load(..., weights_only=True)`.

A checkpoint holds the state dict, the vocab's tokens in index order, the model and training
configs, the corpus fingerprint and the history. No pickled module is ever written or read, so a
file crafted to run code on load is refused by the loader.

Reading is checked in full before anything is built from a file: the archive's real size before it
is unpickled, then the config, the vocab and every tensor's name, dtype, shape and values. Only then
is a model made, so a file cannot make us allocate more than it holds, and every refusal is one line
that names the file and the problem.
"""

import io
import os
import pickle
import re
import zipfile
from dataclasses import asdict, fields
from pathlib import Path

import torch

from charrnn.files import atomic_write
from charrnn.models import CELLS, KINDS, ModelConfig, make_model, mixture
from charrnn.vocab import Vocab

FORMAT = "charrnn-checkpoint-v1"

# The largest real checkpoint: vocab 5,000 (data.MAX_VOCAB) and num_hiddens 8,192 (the app's largest model)
# hold V*H + H*H + H + H*V + V = 149,042,056 float32 numbers (the concise model: H more), 569 MiB, plus a
# pickle of a few MB (config, vocab, history). 1 GiB leaves room for that and refuses anything far larger.
MAX_CHECKPOINT_BYTES = 1 << 30
# torch.save writes its zip entries STORED, so a real archive unpacks to less than its own size. A file
# whose entries unpack to more was compressed by someone else, to make a small file allocate a lot.
ZIP_SLACK_BYTES = 1 << 20

# torch.load(weights_only=True) could run code hidden in a checkpoint before 2.6 (CVE-2025-32434), and a
# crafted checkpoint could corrupt memory through it before 2.10 (CVE-2026-24747, GHSA-63cw-57p8-fm3p).
MIN_SAFE_TORCH = (2, 10)
UNSAFE_TORCH_CVES = "CVE-2025-32434, CVE-2026-24747"

CONFIG_KEYS = tuple(f.name for f in fields(ModelConfig))  # vocab_size, num_hiddens, kind, cell, num_layers, dropout


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded, with a message naming the file and the problem."""


def make_checkpoint(
    model: torch.nn.Module, vocab: Vocab, train_config=None, corpus=None, history=(), state_dict=None, **extra
) -> dict:
    """The checkpoint dict; `state_dict` (default: the model's own) may be an earlier copy of its
    weights; `extra` holds plain values such as the epoch and the iterator's state. A mixed model's checkpoint also
    holds the training tokens its n-gram counts (`ngram_tokens`)."""
    mix = mixture.mixture(model)
    return {
        **extra,
        "format": FORMAT,
        "model_config": asdict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in (state_dict or model.state_dict()).items()},
        "vocab": list(vocab.idx_to_token),
        "train_config": asdict(train_config) if train_config is not None else None,
        "corpus": corpus,
        "history": [asdict(h) if not isinstance(h, dict) else h for h in history],
        **({"ngram_tokens": mix.tokens} if mix else {}),
    }


def serialized(ckpt: dict) -> bytes:
    """A checkpoint dict as the bytes `torch.save` writes (what the run store keeps, and a file holds)."""
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    return buffer.getvalue()


def save_checkpoint(
    path, model: torch.nn.Module, vocab: Vocab, train_config=None, corpus=None, history=(), state_dict=None, **extra
) -> Path:
    """Write atomically: a temporary file in the same folder, fsync, then rename."""
    ckpt = make_checkpoint(model, vocab, train_config, corpus, history, state_dict, **extra)
    return atomic_write(path, lambda f: torch.save(ckpt, f))


def check_torch_version(version: str = torch.__version__) -> None:
    """Refuse to unpickle anything on a torch whose weights_only loader is known to be unsafe."""
    found = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
    if found < MIN_SAFE_TORCH:
        floor = ".".join(map(str, MIN_SAFE_TORCH))
        raise CheckpointError(
            f"checkpoints are not loaded on torch {version}: versions before {floor} can run code hidden in a "
            f"checkpoint ({UNSAFE_TORCH_CVES}); upgrade torch"
        )


def read_checkpoint(source) -> dict:
    """Load and check in full a checkpoint dict from a path or a seekable file-like object (an upload)."""
    check_torch_version()
    name = _name(source)
    if hasattr(source, "read"):
        return _read_open(source, name)
    try:
        with open(source, "rb") as f:  # one open file for the size check and the load: no swap in between
            return _read_open(f, name)
    except FileNotFoundError as e:
        raise CheckpointError(f"No checkpoint at {name}; check the path.") from e
    except IsADirectoryError as e:
        raise CheckpointError(f"{name} is a folder, not a checkpoint file; give the path of a .pt file.") from e


def load_checkpoint(source, device="cpu") -> tuple[torch.nn.Module, Vocab, dict]:
    """(model, vocab, checkpoint dict) from a checkpoint file; the model is in eval mode on `device`."""
    ckpt = read_checkpoint(source)
    # On the meta device the model gets shapes but no memory and no random init; to_empty then allocates it
    # once, uninitialised, on `device`, and load_state_dict fills it (converting the dtype if need be).
    model = _meta_model(ModelConfig(**ckpt["model_config"])).to_empty(device=device)
    model.load_state_dict(ckpt["state_dict"])  # names and shapes were checked: this cannot mismatch
    mixture.attach(model, ckpt.get("ngram_tokens"))  # checked too: a mixed model holds its training text
    return model.eval(), Vocab.from_tokens(ckpt["vocab"]), ckpt


def _name(source) -> str:
    """A path as given (a Path's .name would drop its folder), else an upload's name."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "name", None) or "the checkpoint")


def _short(value) -> str:
    """A hostile value's repr, on one line and short enough to quote in a message."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _read_open(f, name: str) -> dict:
    _check_archive(f, name)
    try:
        ckpt = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{name} was refused: it is not a plain charrnn checkpoint (a damaged file, or one that would "
            "need to run code to load, which is never allowed)."
        ) from e
    except Exception as e:  # a damaged archive, a storage that is not there, ...
        raise CheckpointError(f"{name} is not a readable checkpoint ({type(e).__name__}); is the file complete?") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{name} is not a charrnn checkpoint (format {FORMAT} expected).")
    config = _check_config(ckpt.get("model_config"), name)
    _check_vocab(ckpt.get("vocab"), config.vocab_size, name)
    _check_state_dict(ckpt.get("state_dict"), config, name)
    if config.ngram_order:
        _check_ngram_tokens(ckpt.get("ngram_tokens"), config, name)
    return ckpt


def _meta_model(config: ModelConfig) -> torch.nn.Module:
    """The model `config` describes, with shapes but no memory (nothing is allocated or drawn)."""
    with torch.device("meta"):
        return make_model(config, generator=None)


def describe(config: ModelConfig) -> str:
    """'a 2-layer scratch lstm', as a message names a model."""
    depth = f"{config.num_layers}-layer " if config.num_layers > 1 else ""
    mixed = f" mixed with a {config.ngram_order}-gram" if config.ngram_order else ""
    return f"a {depth}{config.kind} {config.cell}{mixed}"


def _check_archive(f, name: str) -> None:
    """Refuse, before anything is unpickled, a file that is not torch.save's zip or that unpacks to more than
    it holds. Leaves `f` at its start."""
    size = f.seek(0, 2)
    f.seek(0)
    if size == 0:
        raise CheckpointError(f"{name} is empty; is the file complete?")
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{name} is {size:,} bytes; a checkpoint is at most {MAX_CHECKPOINT_BYTES:,} bytes.")
    try:
        with zipfile.ZipFile(f) as archive:
            unpacked = sum(entry.file_size for entry in archive.infolist())
    except Exception as e:  # not a zip at all, or a zip cut short
        if f.seek(0) == 0 and f.read(2) == b"PK":
            raise CheckpointError(
                f"{name} is not a readable checkpoint (a damaged zip archive); is the file complete?"
            ) from e
        raise CheckpointError(
            f"{name} was refused: it is not a checkpoint as torch.save writes one (a zip archive) but a damaged "
            "file or a plain pickle, which could run code when loaded and is never read."
        ) from e
    finally:
        f.seek(0)
    if unpacked > min(size + ZIP_SLACK_BYTES, MAX_CHECKPOINT_BYTES):
        raise CheckpointError(
            f"{name} was refused: its {size:,} bytes unpack to {unpacked:,} bytes, but torch.save never "
            "compresses (a file made to fill memory)."
        )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_config(config, name: str) -> ModelConfig:
    """The ModelConfig of a model_config that holds exactly what a model needs, with every value in range.
    One written before chapter 9 has no cell, layers or dropout: it is a one-layer rnn."""
    if not isinstance(config, dict):
        raise CheckpointError(f"{name}: its model_config is missing or not a table of settings.")
    unknown = [_short(k) for k in config if k not in CONFIG_KEYS]
    if unknown:
        raise CheckpointError(f"{name}: its model_config has unknown settings {', '.join(unknown[:5])}.")
    for key, least in (("vocab_size", 2), ("num_hiddens", 1)):
        value = config.get(key)
        if not _is_int(value) or value < least:
            raise CheckpointError(
                f"{name}: its model_config's {key} must be a whole number of at least {least}, not {_short(value)}."
            )
    for key, known in (("kind", KINDS), ("cell", CELLS)):
        if config.get(key, known[0]) not in known:
            raise CheckpointError(
                f"{name}: its model_config has {key} {_short(config[key])}; this version knows "
                f"{', '.join(map(repr, known))}."
            )
    model_config = ModelConfig(**config)
    try:
        return model_config.check()
    except ValueError as e:
        raise CheckpointError(f"{name}: its model_config's {e}.") from e


def _check_vocab(vocab, V: int, name: str) -> None:
    if not isinstance(vocab, list):
        raise CheckpointError(f"{name}: its vocab must be a list of tokens, not {type(vocab).__name__}.")
    bad = next((i for i, token in enumerate(vocab) if not isinstance(token, str)), None)
    if bad is not None:
        raise CheckpointError(
            f"{name}: its vocab holds {_short(vocab[bad])} ({type(vocab[bad]).__name__}) at index {bad}; "
            "tokens are strings."
        )
    if not vocab or vocab[0] != "<unk>":
        raise CheckpointError(f"{name}: its vocab must start with '<unk>', not {_short(vocab[:1])}.")
    seen = set()
    for token in vocab:
        if token in seen:
            raise CheckpointError(f"{name}: its vocab repeats the token {_short(token)}.")
        seen.add(token)
    if len(vocab) != V:
        raise CheckpointError(f"{name}: its vocab has {len(vocab)} tokens but its model_config says vocab_size {V}.")


def _check_ngram_tokens(tokens, config: ModelConfig, name: str) -> None:
    """A mixed model's training text: a dense 1-D tensor of whole numbers, each a token of the vocab."""
    if not isinstance(tokens, torch.Tensor) or tokens.layout != torch.strided or not tokens.is_contiguous():
        raise CheckpointError(
            f"{name}: its model_config mixes in a {config.ngram_order}-gram, but it holds no ngram_tokens (the "
            "training text the n-gram counts); save the model again."
        )
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool or tokens.dim() != 1:
        raise CheckpointError(
            f"{name}: its ngram_tokens must be one row of whole numbers, not {tokens.dtype} of "
            f"shape {tuple(tokens.shape)}."
        )
    if len(tokens) < config.ngram_order or int(tokens.min()) < 0 or int(tokens.max()) >= config.vocab_size:
        raise CheckpointError(
            f"{name}: its ngram_tokens must hold at least {config.ngram_order} tokens from 0 to "
            f"{config.vocab_size - 1} (its vocab); save the model again."
        )


def _check_state_dict(state_dict, config: ModelConfig, name: str) -> None:
    """Exactly the tensors the config's model holds: dense floating-point tensors of its shapes, all finite."""
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{name}: its state_dict is missing or not a table of tensors.")
    expected = {key: tuple(t.shape) for key, t in _meta_model(config).state_dict().items()}
    missing = [k for k in expected if k not in state_dict]
    extra = [_short(k) for k in state_dict if k not in expected]
    if missing or extra:
        problem = f"lacks {', '.join(missing[:8])}" if missing else f"has unexpected entries {', '.join(extra[:5])}"
        raise CheckpointError(
            f"{name}: its state_dict {problem}, but its model_config says it holds {describe(config)} "
            f"({', '.join(list(expected)[:8])}{', ...' if len(expected) > 8 else ''})."
        )
    for key, shape in expected.items():
        _check_tensor(state_dict[key], key, shape, config, name)
    broken = [key for key in expected if not torch.isfinite(state_dict[key]).all()]
    if broken:
        raise CheckpointError(f"{name}: its weights hold NaN or infinite values ({', '.join(broken[:8])}).")


def _check_tensor(t, key: str, shape: tuple, config: ModelConfig, name: str) -> None:
    if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
        raise CheckpointError(f"{name}: its {key} is not a plain tensor but {type(t).__name__}.")
    if not t.is_floating_point():
        raise CheckpointError(f"{name}: its {key} holds {t.dtype} values; weights are floating-point numbers.")
    if tuple(t.shape) != shape:
        raise CheckpointError(
            f"{name}: its {key} has shape {tuple(t.shape)} but its model_config says vocab_size "
            f"{config.vocab_size}, num_hiddens {config.num_hiddens} ({describe(config)}), which needs {shape}."
        )
    # A view with zero strides can claim any shape over a few stored numbers; a contiguous tensor holds
    # every number it shows, so its size is bounded by the archive's.
    if not t.is_contiguous():
        raise CheckpointError(f"{name}: its {key} is not stored as one dense block; save the model again.")
