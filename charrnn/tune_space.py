"""The search space of `charrnn tune`: which hyperparameters vary, and over what (no optuna state here).

Its text form is the CLI's `--space` and the Tune page's fields: comma-separated `name=SPEC`, where
SPEC is `low:high` (uniform), `low:high:log` (log-uniform: lr and clip act by factors, so a log range
gives 0.1-1 as many tries as 1-10) or `a|b|c` (choices). Every point is checked before a study starts,
so a space that cannot train is refused in one line, not trial by trial.
"""

import dataclasses
import itertools
import math
from dataclasses import dataclass

from charrnn.batches import SAMPLINGS, SeqDataLoader
from charrnn.data import split_heldout
from charrnn.models import CELLS, KINDS
from charrnn.train import STATES, TrainConfig, check_fits

# What a search may vary, and its type. The rest is fixed for a whole study: num_epochs is each trial's
# budget, and max_tokens / val_tokens would change the held-out text the trials are judged on.
TUNABLE = {
    "lr": float,
    "clip": float,
    "num_hiddens": int,
    "num_steps": int,
    "batch_size": int,
    "sampling": str,
    "state": str,
    "model": str,
    "cell": str,
    "num_layers": int,
    "dropout": float,
}
CHOICES = {"sampling": SAMPLINGS, "state": STATES, "model": KINDS, "cell": CELLS}  # what each str field takes
FIXED_WHY = {
    "num_epochs": "it is each trial's budget (--epochs)",
    "max_tokens": "every trial must be judged on the same held-out text (--max-tokens)",
    "val_tokens": "every trial must be judged on the same held-out text (--val-tokens)",
    "eval_every": "the pruner compares trials at the same epochs (--eval-every)",
}
MEMORY = ("num_hiddens", "batch_size", "num_steps", "num_layers")  # what check_fits grows with
# Choices whose points have no order: the corner check tries each (model and cell change the weights
# and the gates kept per step, sampling the minibatches a text of that length gives).
CORNER_CHOICES = ("sampling", "model", "cell")
GRID_POINTS = 3  # a range becomes low, middle, high for the grid sampler
EXAMPLE = "lr=0.1:10:log"


class FieldError(ValueError):
    """A setting of a search that cannot work: `field` names it (study, storage, space, trials, ...),
    `dim` the hyperparameter of the space when there is one; the message says what to do. The CLI
    puts the flag before the message, the Tune page shows it at the field."""

    def __init__(self, field: str, message: str, dim: str | None = None):
        super().__init__(message)
        self.field, self.dim = field, dim


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter that varies: a range (`low`..`high`, maybe log-scaled) or `choices`."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()

    def bounds(self) -> list:
        """The extreme points, enough to check a range (every config field is monotone in its checks)."""
        return list(self.choices) if self.choices else [self.low, self.high]

    def points(self) -> list:
        """The grid sampler's points: the choices, or low, middle (geometric for log) and high."""
        if self.choices:
            return list(self.choices)
        if self.log:
            values = [self.low * (self.high / self.low) ** (i / (GRID_POINTS - 1)) for i in range(GRID_POINTS)]
        else:
            values = [self.low + (self.high - self.low) * i / (GRID_POINTS - 1) for i in range(GRID_POINTS)]
        if TUNABLE[self.name] is int:
            values = [round(v) for v in values]
        else:
            values = [float(f"{v:.6g}") for v in values]
            values[0], values[-1] = self.low, self.high  # never rounded out of the range
        return list(dict.fromkeys(values))  # a narrow int range gives fewer than three

    def suggest(self, trial):
        """This dimension's value for an optuna trial."""
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        if TUNABLE[self.name] is int:
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def text(self) -> str:
        if self.choices:
            return f"{self.name}={'|'.join(str(c) for c in self.choices)}"
        return f"{self.name}={self.low:g}:{self.high:g}{':log' if self.log else ''}"


def parse_value(name: str, text: str):
    """One value of hyperparameter `name`, as its type; ValueError saying what is wrong."""
    kind, text = TUNABLE[name], text.strip()
    if kind is str:
        if not text:
            raise ValueError(f"{name} has an empty choice")
        if text not in CHOICES[name]:
            raise ValueError(f"{name} takes one of {', '.join(CHOICES[name])}, not {text!r}")
        return text
    try:
        value = kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"{name} takes {what}, not {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} takes a finite number, not {text!r}")
    return value


def parse_dimension(name: str, spec: str) -> Dimension:
    """`spec` of hyperparameter `name`: `low:high`, `low:high:log` or `a|b|c`."""
    name = name.strip()
    if name not in TUNABLE:
        if name in FIXED_WHY:
            raise ValueError(f"{name} cannot vary in a search: {FIXED_WHY[name]}")
        raise ValueError(f"unknown hyperparameter {name!r}; the space can vary {', '.join(TUNABLE)}")
    parts = spec.split(":")
    if "|" in spec or len(parts) == 1:
        choices = tuple(parse_value(name, c) for c in spec.split("|"))
        if len(set(choices)) < len(choices):
            raise ValueError(f"{name}={spec} lists a choice twice")
        return Dimension(name, choices=choices)
    if TUNABLE[name] is str:
        raise ValueError(f"{name} takes choices such as {name}=a|b, not a range")
    if len(parts) > 3 or (len(parts) == 3 and parts[2].strip() != "log"):
        raise ValueError(f"{name}={spec} is not low:high or low:high:log")
    low, high = parse_value(name, parts[0]), parse_value(name, parts[1])
    log = len(parts) == 3
    if low > high:
        raise ValueError(f"{name}={spec}: the low bound {low:g} is above the high bound {high:g}")
    if log and low <= 0:
        raise ValueError(f"{name}={spec}: a log range must stay above 0; give a positive low bound")
    return Dimension(name, low, high, log)


def parse_space(text: str) -> dict[str, Dimension]:
    """The whole `--space` text; ValueError naming the item that is wrong."""
    space = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        if "=" not in item:
            raise FieldError("space", f"{item!r} is not name=SPEC; e.g. {EXAMPLE} or num_hiddens=128|256")
        name, spec = item.split("=", 1)
        try:
            dim = parse_dimension(name, spec)
        except ValueError as e:
            raise FieldError("space", str(e), name.strip()) from None
        if dim.name in space:
            raise FieldError("space", f"{dim.name} appears twice", dim.name)
        space[dim.name] = dim
    if not space:
        raise FieldError("space", f"the space is empty; vary at least one hyperparameter, e.g. {EXAMPLE}")
    return space


def space_text(space: dict[str, Dimension]) -> str:
    return ",".join(d.text() for d in space.values())


def check_space(space: dict[str, Dimension], base: TrainConfig, corpus, device) -> None:
    """Refuse, before any trial, a space with a point that cannot train: each bound or choice with the
    fixed settings (TrainConfig.validate, the device's memory), and the largest shapes together (memory,
    and a text long enough for one minibatch): the largest num_hiddens, batch_size, num_steps and
    num_layers with each sampling, model and cell the search can give."""
    for dim in space.values():
        for value in dim.bounds():
            _check_point(
                dataclasses.replace(base, **{dim.name: value}), corpus, device, f"{dim.name}={value}", dim.name
            )
    for point in corners(space):
        where = ", ".join(f"{k}={v}" for k, v in point.items()) or "the fixed settings"
        dim = next(iter(point), None)
        _check_point(dataclasses.replace(base, **point), corpus, device, where, dim)


def corners(space: dict[str, Dimension]) -> list[dict]:
    """The space's largest shapes: the largest num_hiddens, batch_size, num_steps and num_layers it
    varies, with each sampling, model and cell it can give (one empty point when it varies none)."""
    corner = {d.name: max(d.bounds()) for d in space.values() if d.name in MEMORY}
    varied = [n for n in CORNER_CHOICES if n in space]
    return [
        {**corner, **dict(zip(varied, values, strict=True))}
        for values in itertools.product(*(space[n].choices for n in varied))
    ]


def _check_point(config: TrainConfig, corpus, device, where: str, dim: str | None) -> None:
    try:
        config.validate()
        check_fits(config, len(corpus.vocab), device)
        train = split_heldout(corpus, config.val_tokens).train
        SeqDataLoader(train, config.batch_size, config.num_steps, config.sampling)
    except ValueError as e:
        raise FieldError("space", f"{where}: {e}", dim) from None


def grid(space: dict[str, Dimension]) -> dict[str, list]:
    """The grid sampler's search space."""
    return {d.name: d.points() for d in space.values()}
