"""Demo mode: the caps a public server needs, on when `CHARRNN_DEMO=1` is in the server's environment.

A teacher who serves the studio to a class wants no visitor to take the machine for an hour or fill its
disk: a run's width, length, text and vocab, its model's size (its cell and depth count), an upload's size
(a checkpoint's: the largest the other caps let a run write) and a study's trials are capped. Plain Python
(no streamlit): the app asks it, and a test can too. It also remembers whose runs are whose: a visitor is a
secret key (`ui.visitor`), of which only a hash is written, in the run store, with the runs it started.
"""

import hashlib
import os
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa

from charrnn.models import CELLS, KINDS, MAX_LAYERS, ModelConfig, param_count
from charrnn.runs.checkpoint import describe
from charrnn.runs.database import ENV as ENV_URL
from charrnn.runs.store import RunStore, home_dir
from charrnn.train import TrainConfig

ENV = "CHARRNN_DEMO"
# A value of the variable that leaves demo mode off; anything else turns it on (a public server that
# sets CHARRNN_DEMO=yes, or =2, must not run without its caps).
OFF = ("", "0", "false", "no", "off")

DEMO_CAPS = {
    "num_hiddens": 512,  # the book's width: a (32, 512) state trains in minutes on a CPU
    "num_epochs": 500,  # the book's recipe
    "max_tokens": 50_000,  # five times the book's 10,000 characters
    # The weights of the recurrent layers (`layer_weights`), which set a step's cost: an LSTM layer has 4 of the
    # RNN's H x H blocks and every layer above the first another 4. 1.1 million admits one layer of any cell at
    # 512 (the LSTM's 1,050,624 is 4 times the book's RNN) and the book's deep LSTM (two layers of 256, 790,528);
    # a 4-layer LSTM of 512 (7.3 million) is refused.
    "layer_weights": 1_100_000,
    # Distinct characters of the text (the vocab): with the width it sets the input and output weights, and so
    # the largest checkpoint (below). The Time Machine has 28 in book mode; most alphabets fit in 256.
    "vocab_size": 256,
    "upload_bytes": 1 << 20,  # a text
    "checkpoint_bytes": 0,  # an uploaded checkpoint: the largest one the caps above let a run write (set below)
    "trials": 16,  # per study, on the Tune page
}
# How each cap is named to the user (the field as the form shows it) and what to do about it.
LABELS = {
    "num_hiddens": "num_hiddens",
    "num_epochs": "Epochs (num_epochs)",
    "max_tokens": "max_tokens",
    "layer_weights": "Model size (cell, num_layers, num_hiddens)",
    "vocab_size": "Vocabulary (distinct characters of the text)",
    "upload_bytes": "Upload size",
    "checkpoint_bytes": "Checkpoint size",
    "trials": "Trials per study",
}
FIXES = {
    "num_hiddens": "lower it (512 is the book's)",
    "num_epochs": "lower it (500 is the book's)",
    "max_tokens": "lower it (10,000 is the book's)",
    "layer_weights": "use fewer layers, a smaller num_hiddens or a cheaper cell (a gru layer costs about 3 rnn layers, "
    "an lstm 4)",
    "vocab_size": "use book preprocessing or a text with fewer distinct characters",
    "upload_bytes": "use a smaller file",
    "checkpoint_bytes": "use a checkpoint of a model within this demo's caps",
    "trials": "run fewer trials",
}
CONFIG_CAPS = ("num_hiddens", "num_epochs", "max_tokens")
BYTES = ("upload_bytes", "checkpoint_bytes")
# A checkpoint's bytes beyond its float32 weights: the vocab, the configs, a 500-epoch history with its samples
# (a download from the Train page), the iterator's state (a run's own file); measured under 200 kB.
CHECKPOINT_OVERHEAD = 512 << 10


def largest_model() -> ModelConfig:
    """The model with the most numbers that the caps admit: every kind, cell and depth at the widest
    num_hiddens within the layer-weights cap, with the largest vocab."""
    found = []
    for kind in KINDS:
        for cell in CELLS:
            for layers in range(1, MAX_LAYERS + 1):
                width = next(
                    h
                    for h in range(DEMO_CAPS["num_hiddens"], 0, -1)
                    if layer_weights(ModelConfig(0, h, kind, cell, layers)) <= DEMO_CAPS["layer_weights"]
                )
                found.append(ModelConfig(DEMO_CAPS["vocab_size"], width, kind, cell, layers))
    return max(found, key=param_count)


def largest_checkpoint() -> int:
    """Bytes of the largest checkpoint a run within the caps writes: its weights and, with Adam, its two
    moments per weight (a run's own file keeps them for resuming), 4 bytes each, plus the overhead."""
    return 3 * 4 * param_count(largest_model()) + CHECKPOINT_OVERHEAD


def demo_enabled() -> bool:
    """Whether this server runs in demo mode; read on each call, so a test can set the variable."""
    return os.environ.get(ENV, "").strip().lower() not in OFF


def _shown(field: str, value: int) -> str:
    return f"{value / 2**20:.1f} MiB" if field in BYTES else f"{value:,}"


def _cap(field: str) -> str:
    cap = DEMO_CAPS[field]
    if field in BYTES:
        return f"{cap / 2**20:.4g} MiB"
    return f"{cap:,} weights in the recurrent layers" if field == "layer_weights" else f"{cap:,}"


def over_cap(field: str, value, what: str = "") -> str | None:
    """The message for `value` of `field` when it is above its cap, else None; `what` (a file name)
    is named beside the value. A value that is not a number is left to the field's own check
    (TrainConfig.validate), which names it better."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= DEMO_CAPS[field]:
        return None
    shown = _shown(field, value) + (f" ({what})" if what else "")
    return f"{LABELS[field]}: at most {_cap(field)} in this demo, not {shown}; {FIXES[field]}."


def model_of(values: dict) -> ModelConfig | None:
    """The model a run's settings (a dict of TrainConfig fields; a stored run's may lack the chapter 9 ones,
    so it is a 1-layer rnn) would train, without its vocab; None when a field is out of range (left to
    TrainConfig.validate, which names it)."""
    defaults = asdict(TrainConfig())
    get = {k: values.get(k, defaults[k]) for k in ("num_hiddens", "model", "cell", "num_layers", "dropout")}
    hiddens = get["num_hiddens"]
    if not isinstance(hiddens, int) or isinstance(hiddens, bool) or hiddens < 1:
        return None
    try:
        return ModelConfig(0, hiddens, get["model"], get["cell"], get["num_layers"], get["dropout"]).check()
    except ValueError:
        return None


def layer_weights(config: ModelConfig) -> int:
    """The recurrent layers' weights and biases: the parameters less those of the input and output
    characters (the vocab's), i.e. what the cell, num_layers and num_hiddens cost per step. The vocab is
    left out so that a cap on it means the same for every text (and is known before the text is read)."""
    return param_count(ModelConfig(0, config.num_hiddens, config.kind, config.cell, config.num_layers))


def check_caps(config: TrainConfig | dict, text_chars: int | None = None, vocab_size: int | None = None) -> list[str]:
    """One message per field of a run's settings above its cap (empty: within them).

    `config` is a TrainConfig or a dict of its fields (a stored run's, maybe partial). max_tokens 0
    means the whole text: above the cap when the text (`text_chars` characters) is longer, or its
    length is not known. The model's size counts its cell and layers (see `layer_weights`); the text's
    vocab (`vocab_size`, when known) is capped too."""
    values = asdict(config) if isinstance(config, TrainConfig) else dict(config)
    problems = [over_cap(field, values.get(field)) for field in CONFIG_CAPS]
    problems.append(over_cap("vocab_size", vocab_size))
    model = model_of(values)
    if model is not None:
        what = f"{describe(model)} with num_hiddens {model.num_hiddens:,}"
        problems.append(over_cap("layer_weights", layer_weights(model), what))
    if values.get("max_tokens") == 0 and (text_chars is None or text_chars > DEMO_CAPS["max_tokens"]):
        whole = f"the whole text, {text_chars:,} characters" if text_chars is not None else "the whole text"
        problems.append(
            f"max_tokens: at most {DEMO_CAPS['max_tokens']:,} in this demo, not 0 ({whole}); "
            f"set max_tokens to {DEMO_CAPS['max_tokens']:,} or less."
        )
    return [p for p in problems if p]


def require_caps(
    config: TrainConfig | dict, text_chars: int | None = None, vocab_size: int | None = None, on: bool | None = None
) -> None:
    """In demo mode (`on`: whether the caps apply, for the app's visitor; None: this server's demo mode),
    ValueError with the first cap `config` is above (it names the field and the cap)."""
    problems = check_caps(config, text_chars, vocab_size) if (demo_enabled() if on is None else on) else []
    if problems:
        raise ValueError(problems[0])


def require_upload(size: int, name: str, field: str = "upload_bytes", on: bool | None = None) -> None:
    """In demo mode (`on`: as for require_caps), ValueError naming the file when it is above the cap of `field`
    (a text's upload_bytes, a checkpoint's checkpoint_bytes)."""
    problem = over_cap(field, size, name) if (demo_enabled() if on is None else on) else None
    if problem:
        raise ValueError(problem)


def caption() -> str:
    """What a visitor is told on every page in demo mode."""
    c = DEMO_CAPS
    return (
        f"Demo mode: num_hiddens up to {c['num_hiddens']}, epochs up to {c['num_epochs']}, "
        f"max_tokens up to {c['max_tokens']:,}, models up to {c['layer_weights']:,} recurrent weights "
        "(one layer of any cell at 512, or two LSTM layers of 256), "
        f"texts up to {c['vocab_size']} distinct characters, uploads up to {c['upload_bytes'] / 2**20:g} MiB "
        f"(checkpoints {c['checkpoint_bytes'] / 2**20:.4g} MiB), {c['trials']} trials per study; you can change "
        "only your own runs (a run goes on when you close the tab, and is yours again in this browser or "
        "through your link)."
    )


DEMO_CAPS["checkpoint_bytes"] = largest_checkpoint()


# ---- whose runs: a visitor's secret key, kept as its hash in the run store ----------------------------------


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@lru_cache(maxsize=8)
def _opened(home: str, url: str) -> RunStore:
    return RunStore(home, url or None)


def _owners(home: str | Path | None) -> RunStore:
    """The run store of `home` (and CHARRNN_DATABASE_URL), opened once per process: the app asks whose runs are
    whose many times a page (every button's may-change), so only the first ask pays for opening (schema check,
    interrupted runs); each ask still reads in a visitors.sqlite that an earlier release left since."""
    store = _opened(str(Path(home) if home is not None else home_dir()), os.environ.get(ENV_URL, ""))
    store.adopt_visitors()
    return store


def claim(run_id: str, key: str, home: str | Path | None = None, who: str | None = None) -> bool:
    """Record, in the run store, that the visitor holding `key` (named `who` when signed in) started `run_id` (the
    first claim stands); False when the store cannot be written (the run trains on; only its owner is not
    remembered past the session)."""
    try:
        _owners(home).claim(run_id, key_hash(key), who)
        return True
    except (ValueError, sa.exc.SQLAlchemyError):  # the database away, or the store unusable (moved aside since)
        _opened.cache_clear()
        return False


def owned(key: str, home: str | Path | None = None) -> frozenset[str]:
    """The ids of the runs the visitor holding `key` started (deleted runs included), on every app server that
    shares the run store; empty when the store cannot be read."""
    try:
        return _owners(home).owned(key_hash(key))
    except (ValueError, sa.exc.SQLAlchemyError):
        _opened.cache_clear()
        return frozenset()
