"""The corpus (D2L 8.2): The Time Machine from the d2l data hub, or any text the user gives.

Where The Time Machine comes from, in order:
1. the folder named by the environment variable ``CHARRNN_DATA_DIR`` (tests and CI point it at
   ``../shared/data``),
2. the cache folder (``CHARRNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/charrnn``, else ``~/.cache/charrnn``),
3. a download from the d2l data hub, SHA-1 checked, written to the cache atomically.
"""

import hashlib
import io
import os
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from charrnn.files import atomic_write
from charrnn.vocab import Vocab

DATA_URL = "http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt"
DATA_SHA1 = "090b5e7e70c295757f55df93cb0a180b9691891a"
FILE_NAME = "timemachine.txt"
MODES = ("book", "raw")
# Larger texts are refused before decoding: the model is for small corpora and a shared demo
# must not be made to tokenise hundreds of megabytes.
MAX_TEXT_BYTES = 20 * 1024 * 1024
# A char vocab this large means the text is not what the model is for (e.g. binary data).
MAX_VOCAB = 5000


class CorpusError(ValueError):
    """A corpus that cannot be used, with a message that says what to do."""


def cache_dir() -> Path:
    if os.environ.get("CHARRNN_CACHE_DIR"):
        return Path(os.environ["CHARRNN_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "charrnn"


def sha1_of(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def find_time_machine() -> Path | None:
    """The verified local copy of The Time Machine, or None; never downloads.

    A copy in ``CHARRNN_DATA_DIR`` with the wrong SHA-1 is an error (someone put it there on
    purpose); a bad cached copy is ignored so that a fresh download can replace it.
    """
    data_dir = os.environ.get("CHARRNN_DATA_DIR")
    if data_dir:
        path = Path(data_dir).expanduser() / FILE_NAME
        if path.is_file():
            if sha1_of(path) != DATA_SHA1:
                raise CorpusError(
                    f"{path} is not the d2l copy of The Time Machine (SHA-1 differs from "
                    f"{DATA_SHA1}); replace it or unset CHARRNN_DATA_DIR."
                )
            return path
    path = cache_dir() / FILE_NAME
    if path.is_file() and sha1_of(path) == DATA_SHA1:
        return path
    return None


def download_time_machine(url: str = DATA_URL, timeout: float = 30.0) -> Path:
    """Download The Time Machine into the cache, check its SHA-1 and move it into place.

    The file is written to a temporary name and renamed only once it is verified, so an
    interrupted or corrupted download never leaves a bad cached copy.
    """
    target = cache_dir() / FILE_NAME
    by_hand = (
        f"Put the file there by hand: download {DATA_URL} and save it as {target} "
        f"(or set CHARRNN_DATA_DIR to a folder holding {FILE_NAME})."
    )
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise CorpusError(f"Could not download The Time Machine from {url}: {reason}. {by_hand}") from e
    digest = hashlib.sha1(data).hexdigest()
    if digest != DATA_SHA1:
        raise CorpusError(
            f"The download from {url} is corrupted (SHA-1 {digest}, expected {DATA_SHA1}); "
            f"nothing was cached. {by_hand}"
        )
    atomic_write(target, lambda f: f.write(data))
    return target


def time_machine_path(download: bool = True, url: str = DATA_URL) -> Path:
    """A verified copy of The Time Machine: local if there is one, else downloaded."""
    path = find_time_machine()
    if path is not None:
        return path
    if not download:
        raise CorpusError(
            f"The Time Machine is not on this machine. Run `python -m charrnn info` online to "
            f"download it, save {DATA_URL} as {cache_dir() / FILE_NAME}, or set CHARRNN_DATA_DIR."
        )
    return download_time_machine(url)


def fallback_text() -> tuple[str, str] | None:
    """(name, text) of a sizeable English text this machine already has, for offline use."""
    candidates = [
        Path("/usr/share/common-licenses/GPL-3"),
        Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "LICENSE.txt",
        Path(sys.base_prefix) / "LICENSE.txt",
    ]
    for path in candidates:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if len(text) >= 10_000:
            return path.name, text
    return None


def decode_text(data: bytes, name: str = "the text") -> str:
    """Strict UTF-8 decoding with the checks every user text goes through."""
    if len(data) > MAX_TEXT_BYTES:
        raise CorpusError(
            f"{name} is {len(data) / 2**20:.1f} MiB; the limit is {MAX_TEXT_BYTES // 2**20} MiB. Use a shorter text."
        )
    if b"\x00" in data:
        raise CorpusError(f"{name} looks binary (it holds NUL bytes); give a plain UTF-8 .txt file.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{name} is not valid UTF-8 (byte {e.start}); save it as UTF-8 text and try again.") from e
    if not text.strip():
        raise CorpusError(f"{name} is empty or only whitespace; give a text with some words in it.")
    return text


def read_text(source, name: str | None = None) -> tuple[str, str]:
    """(name, text) of a file path or uploaded bytes (`name`: the uploaded file's name)."""
    if isinstance(source, (bytes, bytearray)):
        label = f"The uploaded file {name!r}" if name else "The uploaded text"
        return name or "uploaded text", decode_text(bytes(source), label)
    path = Path(source).expanduser()
    if not path.is_file():
        raise CorpusError(f"No text file at {path}; check the path.")
    if path.stat().st_size > MAX_TEXT_BYTES:
        raise CorpusError(f"{path} is over {MAX_TEXT_BYTES // 2**20} MiB; use a shorter text.")
    return path.name, decode_text(path.read_bytes(), str(path))


def book_lines(text: str) -> list[str]:
    """D2L's `read_time_machine`: per line, non-letters to one space, strip, lowercase."""
    return [re.sub("[^A-Za-z]+", " ", line).strip().lower() for line in io.StringIO(text, newline=None)]


def preprocess(text: str, mode: str = "book") -> str:
    """The text as the model sees it, one char per token.

    ``book``: the book's lines joined with NO separator (so "him" + "was" reads "himwas").
    ``raw``: every character kept, newlines normalised to ``\\n``.
    """
    if mode == "book":
        return "".join(book_lines(text))
    if mode == "raw":
        return text.replace("\r\n", "\n").replace("\r", "\n")
    raise CorpusError(f"mode must be one of {', '.join(MODES)}, not {mode!r}.")


@dataclass
class Corpus:
    """A preprocessed text, its vocab (built on the whole text) and its first `max_tokens` indices."""

    name: str
    source: str  # "time_machine", "file", "upload" or "fallback"
    mode: str
    max_tokens: int | None
    sha1: str  # of the original text, so runs can say exactly what they trained on
    num_lines: int
    text: str  # the whole preprocessed text; one char is one token
    vocab: Vocab
    corpus: list[int]  # indices of the first max_tokens chars

    def __len__(self) -> int:
        return len(self.corpus)

    def fingerprint(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "mode": self.mode,
            "max_tokens": self.max_tokens,
            "sha1": self.sha1,
        }


def build_corpus(text: str, name: str, source: str, mode: str = "book", max_tokens: int | None = None) -> Corpus:
    """D2L's `load_corpus_time_machine` over any text: the vocab counts ALL chars, then the
    index list is cut to `max_tokens` (0 or None keeps everything)."""
    if max_tokens is not None and max_tokens < 0:
        raise CorpusError(f"max_tokens must be 0 (all) or positive, not {max_tokens}.")
    processed = preprocess(text, mode)
    if not processed:
        raise CorpusError(f"{name} has no letters left after book preprocessing; try mode 'raw'.")
    vocab = Vocab(processed)
    if len(vocab) > MAX_VOCAB:
        raise CorpusError(
            f"{name} has {len(vocab) - 1:,} distinct characters (the limit is {MAX_VOCAB:,}); "
            "use mode 'book' or a text in one alphabet."
        )
    corpus = vocab.encode(processed)
    if max_tokens:
        corpus = corpus[:max_tokens]
    return Corpus(
        name=name,
        source=source,
        mode=mode,
        max_tokens=max_tokens or None,
        sha1=hashlib.sha1(text.encode("utf-8")).hexdigest(),
        num_lines=len(io.StringIO(text, newline=None).readlines()),
        text=processed,
        vocab=vocab,
        corpus=corpus,
    )


def load_corpus(
    source="time_machine",
    mode: str = "book",
    max_tokens: int | None = 10000,
    download: bool = True,
    name: str | None = None,
) -> Corpus:
    """Load The Time Machine (``"time_machine"``), the offline fallback (``"fallback"``), a file
    path or uploaded bytes (named `name` in messages), preprocess it and build its vocab."""
    if mode not in MODES:
        raise CorpusError(f"mode must be one of {', '.join(MODES)}, not {mode!r}.")
    if source == "time_machine":
        path = time_machine_path(download=download)
        return build_corpus(path.read_text(encoding="utf-8"), "The Time Machine", "time_machine", mode, max_tokens)
    if source == "fallback":
        found = fallback_text()
        if found is None:
            raise CorpusError("No offline fallback text on this machine; upload a .txt file instead.")
        return build_corpus(found[1], found[0], "fallback", mode, max_tokens)
    name, text = read_text(source, name)
    kind = "upload" if isinstance(source, (bytes, bytearray)) else "file"
    return build_corpus(text, name, kind, mode, max_tokens)


@dataclass
class Split:
    """Training and held-out indices of a corpus, and where each lies in its preprocessed text."""

    train: list[int]  # what the iterators walk: exactly `corpus.corpus` when the held-out slice follows it
    val: list[int]  # the held-out chars (empty when held-out evaluation is off)
    train_range: tuple[int, int]  # (start, end) of the training chars in `corpus.text`
    val_range: tuple[int, int] | None  # (start, end) of the held-out chars; None when off


HELDOUT_SHARE = 10  # the fallback holds out the last 1/10 of the text


def split_heldout(corpus: Corpus, val_tokens: int) -> Split:
    """Hold out the `val_tokens` chars that follow the training slice (the recipe: chars
    10,000..11,999), so the training data stay the recipe's; when there is no such room (max_tokens 0,
    or a short text) hold out the last 10% of the text and train on what comes before it."""
    if not isinstance(val_tokens, int) or isinstance(val_tokens, bool) or val_tokens < 0:
        raise ValueError(f"val_tokens must be 0 (no held-out text) or a positive integer, not {val_tokens!r}")
    m, n = len(corpus.corpus), len(corpus.text)
    if val_tokens == 0:
        return Split(corpus.corpus, [], (0, m), None)
    if val_tokens < 2:
        raise ValueError(f"val_tokens must be at least 2 (one char to read, one to predict), not {val_tokens}")
    if corpus.max_tokens and n - m >= val_tokens:
        val_range = (m, m + val_tokens)
        return Split(corpus.corpus, corpus.vocab.encode(corpus.text[m : m + val_tokens]), (0, m), val_range)
    start = n - n // HELDOUT_SHARE
    if n - start < 2:
        raise ValueError(
            f"{corpus.name} has {n:,} chars, too few to hold out the last 10% (at least 2 chars) and still "
            "train; use a longer text or val_tokens 0 to turn held-out evaluation off"
        )
    end = min(start, m)  # max_tokens still caps the training text
    return Split(corpus.corpus[:end], corpus.vocab.encode(corpus.text[start:]), (0, end), (start, n))
