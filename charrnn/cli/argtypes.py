"""The command line's flags: their types, whose errors name the problem in one line (argparse prefixes
the flag). The parser of every command is in `charrnn.cli.parser`.

Everything a flag can be checked for without reading the text or a checkpoint is checked here, at
parse time, so a bad value never costs a download or a model load.
"""

import argparse
import math
import os
import stat
import tempfile
from pathlib import Path

from charrnn.evaluate import check_cadence
from charrnn.generate import MAX_PREDS, MAX_PREFIX
from charrnn.models import MAX_DROPOUT, MAX_LAYERS
from charrnn.runs.database import ENV, DatabaseUrlError, store_url
from charrnn.runs.ownership import check_id
from charrnn.train import MAX_STEP, MAX_WEIGHT_DECAY

MAX_SEED = 2**63  # torch.manual_seed takes any 64-bit value; sqlite stores signed 64-bit integers


def _short(text: str) -> str:
    """A value as typed, quoted on one short line (a 5,000-digit number must not fill the screen)."""
    quoted = repr(text)
    return quoted if len(quoted) <= 40 else quoted[:37] + "..."


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:  # also a number of more than 4,300 digits, which int() refuses
        raise argparse.ArgumentTypeError(f"{_short(text)} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value}")
    return value


def non_negative_int(text: str) -> int:
    return 0 if text.strip() == "0" else positive_int(text)


def at_most(kind, cap, why: str = ""):
    """A flag type: `kind`'s value, refused above `cap` with a line that names the cap (and `why`)."""

    def check(text: str):
        value = kind(text)
        if value > cap:  # a float as typed: 1e39 reads better than its 40 digits
            shown = f"{value:,}" if isinstance(value, int) else text
            raise argparse.ArgumentTypeError(f"must be at most {cap:,.0f}{why}, not {shown}")
        return value

    return check


num_preds = at_most(non_negative_int, MAX_PREDS)
num_layers = at_most(positive_int, MAX_LAYERS)


def dropout(text: str) -> float:
    """A probability of dropping an activation: 0 (off) up to MAX_DROPOUT; 1 would drop everything."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_short(text)} is not a number") from None
    if not 0 <= value <= MAX_DROPOUT:  # also NaN
        raise argparse.ArgumentTypeError(
            f"must be a probability from 0 (off) to {MAX_DROPOUT}, not {_short(text)}; 1 would drop every activation"
        )
    return value


def evaluation_cadence(text: str) -> int | float:
    """`--eval-every`: a whole number of epochs, or 1/k of one (0.25: four evaluations an epoch)."""
    try:
        value = int(text) if text.strip().isdigit() else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_short(text)} is not a number") from None
    try:
        check_cadence(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("eval_every ")) from None
    return value


def database_url(text: str) -> str:
    """`--database`: a PostgreSQL or SQLite URL (its password never repeated in a message)."""
    try:
        store_url(Path("."), text)
    except DatabaseUrlError as e:
        raise argparse.ArgumentTypeError(
            str(e).replace(f"{ENV} is", "it is").replace(f"{ENV} names", "it names")
        ) from None
    return text


def seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 2**63 - 1, not {_short(text)}")
    return value


def _finite_float(text: str, fits, what: str) -> float:
    """A finite number for which `fits(value)` holds, or the problem in one line (`what` it must be)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_short(text)} is not a number") from None
    if not (fits(value) and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be {what}, not {_short(text)}")
    return value


def positive_float(text: str) -> float:
    return _finite_float(text, lambda v: v > 0, "a positive finite number")


def non_negative_float(text: str) -> float:
    return _finite_float(text, lambda v: v >= 0, "0 or a positive finite number")


# lr and clip are used as float32 scalars against float32 weights: lr 1e39 is inf there and the first
# update turns every weight into NaN. Useful values are far below MAX_STEP (1e6).
step_size = at_most(positive_float, MAX_STEP, " (weights are float32)")
clip_theta = at_most(non_negative_float, MAX_STEP, " (weights are float32)")
weight_decay = at_most(non_negative_float, MAX_WEIGHT_DECAY, " (useful values are 1e-5 to 0.1)")


def prefix(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("is empty; give at least one character to start from")
    if len(text) > MAX_PREFIX:
        raise argparse.ArgumentTypeError(f"is {len(text):,} characters; the limit is {MAX_PREFIX:,} (shorten it)")
    return text


def run_id(text: str) -> str:
    """A run id's form (never a path or SQL); whether the run exists is checked against the store."""
    try:
        return check_id(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def input_file(text: str) -> str:
    """A file to read: refused when it is there but is not a regular file (reading a FIFO would wait
    forever, /dev/zero would never end). A missing file is left to the loader, which says so."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is {_kind(path)}, not a file; give the path of a file")
    if path.exists() and path.resolve().parts[1:2] in (("proc",), ("sys",), ("dev",)):
        # the kernel's files say "regular" but are views of memory or devices (/proc/self/mem): never data
        raise argparse.ArgumentTypeError(f"{text} is not a regular file but a kernel file; give the path of a file")
    return text


def output_file(text: str) -> str:
    """A file to write (atomically: a temporary file beside it, then a rename over it): refused unless
    it is new or a regular file, in a folder that exists and can be written."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give the path of the file to write, e.g. run.pt")
    path = Path(text).expanduser()
    if path.exists() and not path.is_file():
        # the rename would replace it: /dev/null would become a regular file
        raise argparse.ArgumentTypeError(f"{text} is {_kind(path)}; give the path of a new or a regular file")
    folder = path.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"folder {folder} does not exist; create it first or choose another one")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"folder {folder} cannot be written; choose a folder of yours")
    try:  # root passes os.access everywhere; a read-only mount or /proc still refuses the real thing
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise argparse.ArgumentTypeError(f"folder {folder} cannot be written ({e.strerror}); choose another") from None
    return text


def _kind(path: Path) -> str:
    mode = path.stat().st_mode
    kinds = [
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def corpus(text: str) -> str:
    """'time_machine', 'fallback' or the path of a text file."""
    return text if text in ("time_machine", "fallback") else input_file(text)
