"""The search space of `charrnn tune`: which hyperparameters vary, and over what (no optuna state here).

Its text form is the CLI's `--space` and the Tune page's fields: comma-separated `name=SPEC`, where
SPEC is `low:high` (uniform), `low:high:log` (log-uniform: lr and clip act by factors, so a log range
gives 0.1-1 as many tries as 1-10) or `a|b|c` (choices, at most MAX_CHOICES). Every point is checked
before a study starts, so a space that cannot train is refused in one line, not trial by trial.

The learning rate depends on the optimizer (SGD's ~1, Adam's ~0.002): when `optimizer` varies, each
optimizer gets its own range, `lr_sgd` and `lr_adam`, suggested only in the trials of that optimizer.
This is Optuna's define-by-run idiom for a conditional space (a parameter per branch, named for it):
TPE then models each range from the trials that used it, never one from a mix of the two scales.
A varied max_tokens cuts each trial's text from the whole one, and each trial is judged on the held-out
text of its own run (the studio's one split), as the Runs page judges that run.
"""

import dataclasses
import itertools
import math
from dataclasses import dataclass

from charrnn.batches import SAMPLINGS, SeqDataLoader
from charrnn.data import split_heldout
from charrnn.models import CELLS, KINDS
from charrnn.train import OPTIMIZERS, STATES, TrainConfig, check_fits

# What a search may vary, and its type. The rest is fixed for a whole study: num_epochs is each trial's
# budget, val_tokens sets the held-out text the trials are judged on.
TUNABLE = {
    "lr": float,
    **{f"lr_{o}": float for o in OPTIMIZERS},  # the learning rate of the trials of one optimizer
    "optimizer": str,
    "weight_decay": float,
    "max_tokens": int,  # the training text's length; 0 = the whole text
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
    "weight_drop": float,
}
CHOICES = {"sampling": SAMPLINGS, "state": STATES, "model": KINDS, "cell": CELLS, "optimizer": OPTIMIZERS}
PER_OPTIMIZER = {f"lr_{o}": o for o in OPTIMIZERS}  # a space name -> the optimizer whose trials take it as lr
FIXED_WHY = {
    "num_epochs": "it is each trial's budget (--epochs)",
    "val_tokens": "every trial must be judged on the same amount of held-out text (--val-tokens)",
    "eval_every": "the pruner compares trials at the same epochs (--eval-every)",
}
MEMORY = ("num_hiddens", "batch_size", "num_steps", "num_layers")  # what check_fits grows with
MAX_CHOICES = 100  # more is a list nobody meant: a range says it better
ECHO = 60  # the most of a user's text a message repeats
MAX_LINE = 300  # the longest error line the CLI prints or the page shows
# Choices whose points have no order: the corner check tries each (model and cell change the weights
# and the gates kept per step, sampling the minibatches a text of that length gives).
CORNER_CHOICES = ("sampling", "model", "cell")
GRID_POINTS = 3  # a range becomes low, middle, high for the grid sampler
EXAMPLE = "lr=0.1:10:log"
LR_EXAMPLE = "lr_sgd=0.25:4:log,lr_adam=0.0005:0.01:log"


def echo(text, limit: int = ECHO) -> str:
    """A user's text as a message repeats it: whole when short, else its start and its length."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def one_line(message: str) -> str:
    """An error as one line of at most MAX_LINE characters (messages echo little; this is the last guard)."""
    line = " ".join(str(message).split())
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..."


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

    def setting(self, value) -> dict:
        """The TrainConfig fields of one value: lr_sgd and lr_adam set lr, and the optimizer they go with."""
        if self.name in PER_OPTIMIZER:
            return {"lr": value, "optimizer": PER_OPTIMIZER[self.name]}
        return {self.name: value}

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
            raise ValueError(f"{name} takes one of {', '.join(CHOICES[name])}, not {echo(text)!r}")
        return text
    try:
        value = kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"{name} takes {what}, not {echo(text)!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} takes a finite number, not {echo(text)!r}")
    return value


def parse_dimension(name: str, spec: str) -> Dimension:
    """`spec` of hyperparameter `name`: `low:high`, `low:high:log` or `a|b|c`."""
    name = name.strip()
    if name not in TUNABLE:
        if name in FIXED_WHY:
            raise ValueError(f"{name} cannot vary in a search: {FIXED_WHY[name]}")
        raise ValueError(f"unknown hyperparameter {echo(name)!r}; the space can vary {', '.join(TUNABLE)}")
    parts = spec.split(":")
    if "|" in spec or len(parts) == 1:
        if spec.count("|") >= MAX_CHOICES:
            raise ValueError(f"{name} lists {spec.count('|') + 1:,} choices, at most {MAX_CHOICES}; give a range")
        choices = tuple(parse_value(name, c) for c in spec.split("|"))
        twice = next((c for i, c in enumerate(choices) if c in choices[:i]), None)
        if twice is not None:
            raise ValueError(f"{name} lists the choice {twice} twice")
        return Dimension(name, choices=choices)
    if TUNABLE[name] is str:
        raise ValueError(f"{name} takes choices such as {name}=a|b, not a range")
    if len(parts) > 3 or (len(parts) == 3 and parts[2].strip() != "log"):
        raise ValueError(f"{name}={echo(spec)} is not low:high or low:high:log")
    low, high = parse_value(name, parts[0]), parse_value(name, parts[1])
    log = len(parts) == 3
    spec = echo(spec)
    if low > high:
        raise ValueError(f"{name}={spec}: the low bound {low:g} is above the high bound {high:g}")
    if log and low <= 0:
        raise ValueError(f"{name}={spec}: a log range must stay above 0; give a positive low bound")
    if name == "max_tokens" and low == 0:  # 0 is the whole text, not a length next to 1
        raise ValueError(f"max_tokens={spec}: 0 means the whole text; list choices, e.g. max_tokens=10000|50000|0")
    return Dimension(name, low, high, log)


def parse_space(text: str) -> dict[str, Dimension]:
    """The whole `--space` text; ValueError naming the item that is wrong."""
    space = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        if "=" not in item:
            raise FieldError("space", f"{echo(item)!r} is not name=SPEC; e.g. {EXAMPLE} or num_hiddens=128|256")
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
    """Refuse, before any trial, a space with a point that cannot train: learning rates that do not fit
    the optimizers (`check_learning_rates`), each bound or choice with the fixed settings
    (TrainConfig.validate, the device's memory, a text long enough for one minibatch), and the largest
    shapes together: the largest num_hiddens, batch_size, num_steps and num_layers on the shortest
    training text, with each sampling, model and cell the search can give. `corpus` is the whole text
    when max_tokens varies (each trial's is cut from it, `trial_corpus`)."""
    check_learning_rates(space, base)
    for dim in space.values():
        for value in dim.bounds():
            config = dataclasses.replace(base, **dim.setting(value))
            _check_point(config, corpus, device, f"{dim.name}={value}", dim.name)
    for point in corners(space):
        where = ", ".join(f"{k}={v}" for k, v in point.items()) or "the fixed settings"
        dim = next(iter(point), None)
        _check_point(dataclasses.replace(base, **point), corpus, device, where, dim)


def check_learning_rates(space: dict[str, Dimension], base: TrainConfig) -> None:
    """One learning rate per trial: `lr`, or one `lr_<optimizer>` per optimizer the search gives; a
    varied optimizer needs a range for each (SGD's and Adam's useful rates are ~500 times apart)."""
    per = [n for n in PER_OPTIMIZER if n in space]
    optimizers = space["optimizer"].choices if "optimizer" in space else (base.optimizer,)
    if "lr" in space and per:
        raise FieldError("space", f"give lr or {' and '.join(per)}, not both", "lr")
    for name in per:
        if PER_OPTIMIZER[name] not in optimizers:
            why = f"{name} is the lr of {PER_OPTIMIZER[name]} trials, but every trial uses {'|'.join(optimizers)}"
            raise FieldError("space", f"{why}; leave {name} out, or vary optimizer=sgd|adam", name)
    missing = [f"lr_{o}" for o in optimizers if f"lr_{o}" not in space]
    if len(optimizers) > 1 and missing:
        raise FieldError(
            "space",
            f"optimizer varies: give each optimizer its learning-rate range ({', '.join(missing)}), e.g. {LR_EXAMPLE}",
            "lr" if "lr" in space else "optimizer",
        )


def corners(space: dict[str, Dimension]) -> list[dict]:
    """The space's largest shapes: the largest num_hiddens, batch_size, num_steps and num_layers it
    varies, on its shortest training text, with each sampling, model and cell it can give (one empty
    point when it varies none)."""
    corner = {d.name: max(d.bounds()) for d in space.values() if d.name in MEMORY}
    if "max_tokens" in space:  # 0 is the whole text: the longest
        corner["max_tokens"] = min(space["max_tokens"].bounds(), key=lambda n: n or math.inf)
    varied = [n for n in CORNER_CHOICES if n in space]
    return [
        {**corner, **dict(zip(varied, values, strict=True))}
        for values in itertools.product(*(space[n].choices for n in varied))
    ]


def trial_corpus(corpus, max_tokens: int):
    """The text a trial trains on: the first `max_tokens` indices of the whole `corpus` (0: all of it),
    exactly what `charrnn.data.load_corpus` gives for that max_tokens (one vocab, built on the whole text)."""
    if (max_tokens or None) == corpus.max_tokens:
        return corpus
    if corpus.max_tokens:  # an invariant: a search that varies max_tokens loads the whole text
        raise RuntimeError(f"max_tokens {max_tokens} cannot be cut from a text of max_tokens {corpus.max_tokens}")
    return dataclasses.replace(corpus, max_tokens=max_tokens or None, corpus=corpus.corpus[: max_tokens or None])


def trial_config(space: dict[str, Dimension], base: TrainConfig, trial) -> TrainConfig:
    """An optuna trial's settings: `base` with the space's suggestions, the optimizer first, then only the
    learning rate of the optimizer it drew (define-by-run)."""
    params = {"optimizer": space["optimizer"].suggest(trial)} if "optimizer" in space else {}
    optimizer = params.get("optimizer", base.optimizer)
    for dim in space.values():
        if dim.name != "optimizer" and PER_OPTIMIZER.get(dim.name, optimizer) == optimizer:
            params.update(dim.setting(dim.suggest(trial)))
    return dataclasses.replace(base, **params)


def _check_point(config: TrainConfig, corpus, device, where: str, dim: str | None) -> None:
    try:
        config.validate()
        check_fits(config, len(corpus.vocab), device)
        train = split_heldout(trial_corpus(corpus, config.max_tokens), config.val_tokens).train
        SeqDataLoader(train, config.batch_size, config.num_steps, config.sampling)
    except ValueError as e:
        raise FieldError("space", f"{where}: {e}", dim) from None


def grid(space: dict[str, Dimension]) -> dict[str, list]:
    """The grid sampler's search space; a FieldError for per-optimizer learning rates, which a grid
    would cross with each other (every sgd point once per lr_adam value)."""
    per = [n for n in PER_OPTIMIZER if n in space]
    if per:
        raise FieldError("sampler", f"the grid sampler cannot search {' and '.join(per)}; use tpe or random")
    return {d.name: d.points() for d in space.values()}
