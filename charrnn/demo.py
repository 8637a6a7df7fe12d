"""Demo mode: the caps a public server needs, on when `CHARRNN_DEMO=1` is in the server's environment.

A teacher who serves the studio to a class wants no visitor to take the machine for an hour or fill its
disk: a run's width, length and text, an upload's size and a study's trials are capped. Plain Python (no
streamlit): the app asks it, and a test can too. Which runs a visitor may change is the app's business
(`ui.demo`), since only the app knows its browser sessions.
"""

import os
from dataclasses import asdict

from charrnn.train import TrainConfig

ENV = "CHARRNN_DEMO"
# A value of the variable that leaves demo mode off; anything else turns it on (a public server that
# sets CHARRNN_DEMO=yes, or =2, must not run without its caps).
OFF = ("", "0", "false", "no", "off")

DEMO_CAPS = {
    "num_hiddens": 512,  # the book's width: a (32, 512) state trains in minutes on a CPU
    "num_epochs": 500,  # the book's recipe
    "max_tokens": 50_000,  # five times the book's 10,000 characters
    "upload_bytes": 1 << 20,  # texts and checkpoints alike
    "trials": 16,  # per study, on the Tune page
}
# How each cap is named to the user (the field as the form shows it) and what to do about it.
LABELS = {
    "num_hiddens": "num_hiddens",
    "num_epochs": "Epochs (num_epochs)",
    "max_tokens": "max_tokens",
    "upload_bytes": "Upload size",
    "trials": "Trials per study",
}
FIXES = {
    "num_hiddens": "lower it (512 is the book's)",
    "num_epochs": "lower it (500 is the book's)",
    "max_tokens": "lower it (10,000 is the book's)",
    "upload_bytes": "use a smaller file",
    "trials": "run fewer trials",
}
CONFIG_CAPS = ("num_hiddens", "num_epochs", "max_tokens")


def demo_enabled() -> bool:
    """Whether this server runs in demo mode; read on each call, so a test can set the variable."""
    return os.environ.get(ENV, "").strip().lower() not in OFF


def _shown(field: str, value: int) -> str:
    return f"{value / 2**20:.1f} MiB" if field == "upload_bytes" else f"{value:,}"


def over_cap(field: str, value, what: str = "") -> str | None:
    """The message for `value` of `field` when it is above its cap, else None; `what` (a file name)
    is named beside the value. A value that is not a number is left to the field's own check
    (TrainConfig.validate), which names it better."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= DEMO_CAPS[field]:
        return None
    cap = f"{DEMO_CAPS[field] / 2**20:g} MiB" if field == "upload_bytes" else f"{DEMO_CAPS[field]:,}"
    shown = _shown(field, value) + (f" ({what})" if what else "")
    return f"{LABELS[field]}: at most {cap} in this demo, not {shown}; {FIXES[field]}."


def check_caps(config: TrainConfig | dict, text_chars: int | None = None) -> list[str]:
    """One message per field of a run's settings above its cap (empty: within them).

    `config` is a TrainConfig or a dict of its fields (a stored run's, maybe partial). max_tokens 0
    means the whole text: above the cap when the text (`text_chars` characters) is longer, or its
    length is not known."""
    values = asdict(config) if isinstance(config, TrainConfig) else dict(config)
    problems = [over_cap(field, values.get(field)) for field in CONFIG_CAPS]
    if values.get("max_tokens") == 0 and (text_chars is None or text_chars > DEMO_CAPS["max_tokens"]):
        whole = f"the whole text, {text_chars:,} characters" if text_chars is not None else "the whole text"
        problems.append(
            f"max_tokens: at most {DEMO_CAPS['max_tokens']:,} in this demo, not 0 ({whole}); "
            f"set max_tokens to {DEMO_CAPS['max_tokens']:,} or less."
        )
    return [p for p in problems if p]


def require_caps(config: TrainConfig | dict, text_chars: int | None = None) -> None:
    """In demo mode, ValueError with the first cap `config` is above (it names the field and the cap)."""
    problems = check_caps(config, text_chars) if demo_enabled() else []
    if problems:
        raise ValueError(problems[0])


def require_upload(size: int, name: str) -> None:
    """In demo mode, ValueError naming the file when it is above the upload cap."""
    problem = over_cap("upload_bytes", size, name) if demo_enabled() else None
    if problem:
        raise ValueError(problem)


def caption() -> str:
    """What a visitor is told on every page in demo mode."""
    c = DEMO_CAPS
    return (
        f"Demo mode: num_hiddens up to {c['num_hiddens']}, epochs up to {c['num_epochs']}, "
        f"max_tokens up to {c['max_tokens']:,}, uploads up to {c['upload_bytes'] / 2**20:g} MiB, "
        f"{c['trials']} trials per study; you can change only your own runs."
    )
