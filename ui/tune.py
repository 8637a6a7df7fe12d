"""The Tune page's glue: the search form, this session's study (a thread of the server whose trials
train through the session's Runner under the shared device lock), and the views of any study.

Errors are kept per field in session state ("tune_errors": field -> message) and shown under it.
"""

import sqlite3
import threading
import time
from dataclasses import asdict, replace

import optuna
import streamlit as st

from charrnn.data import CorpusError
from charrnn.device import resolve_device
from charrnn.runs import demo
from charrnn.runs.store import RunStore
from charrnn.tune.plan import Search
from charrnn.tune.space import FieldError, corners, one_line, parse_dimension
from charrnn.tune.storage import masked, open_storage, storage_url
from charrnn.tune.study import eval_cadence, pruning_note
from charrnn.tune.tuner import Tuner
from ui import auth
from ui.corpus import load_chosen_corpus
from ui.demo import capped
from ui.state import HP_FIELDS, set_setting, switch_to, train_config
from ui.training import device_lock, runner
from ui.visitor import visitor_key

optuna.logging.set_verbosity(optuna.logging.ERROR)  # the page shows each trial's state and reason itself

# The form's ranges, with the book's recipe (lr 1, clip 1, 512 hidden, 35 steps, batch 32) at the centre.
SPECS = {
    "lr": "0.25:4:log",
    "optimizer": "sgd|adam",  # with it, lr_sgd and lr_adam instead of lr: their useful rates are far apart
    "lr_sgd": "0.25:4:log",
    "lr_adam": "0.0005:0.01:log",
    "weight_decay": "0.00001:0.1:log",
    "clip": "0.25:4:log",
    "num_hiddens": "256|512|1024",
    "num_steps": "16|35|64",
    "batch_size": "16|32|64",
    "sampling": "sequential|random",
    "state": "carry|reset",
    "model": "scratch|concise",
    "cell": "rnn|gru|lstm",  # 8.5, 9.1, 9.2
    "num_layers": "1:3",  # 9.3's deep RNN stacks 2
    "dropout": "0:0.5",  # between layers and before the head
    "weight_drop": "0:0.6",  # DropConnect on W_hh (concise models)
    "max_tokens": "10000|0",  # the book's first 10,000 chars, or the whole text
}
VARIED = ("lr", "clip", "num_hiddens")
DEFAULTS = {
    **{f"tune_vary_{n}": n in VARIED for n in SPECS},
    **{f"tune_spec_{n}": spec for n, spec in SPECS.items()},
    "tune_trials": 8,
    "tune_epochs": 30,
    "tune_sampler": "tpe",
    "tune_pruner": "median",
    "tune_study": None,  # the study shown (picked, or the one this session started)
}


def init():
    if capped():  # the form opens within the demo's caps (num_hiddens at most 512)
        st.session_state.setdefault("tune_spec_num_hiddens", "128|256|512")
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    st.session_state.setdefault("tune_name", time.strftime("study %Y-%m-%d %H.%M"))


class TuneJob:
    """This session's search: a thread running `Tuner.run`; plain Python (no st.* in the thread)."""

    def __init__(self):
        self.tuner: Tuner | None = None
        self.thread: threading.Thread | None = None
        self.message = ""  # why the search ended early, if it did

    def start(self, tuner: Tuner):
        self.tuner, self.message = tuner, ""
        self.thread = threading.Thread(target=self._work, name="charrnn-tune", daemon=True)
        self.thread.start()

    def _work(self):
        try:
            self.tuner.run()
        except Exception as e:  # shown on the page; the thread must not die silently
            self.message = one_line(f"The search ended: {type(e).__name__}: {e}")

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    @property
    def study(self) -> str | None:
        return self.tuner.search.study if self.tuner is not None else None

    def stop(self):
        """Stop: the trial ends after its epoch (FAIL, "stopped by the user") and the search with it."""
        if self.tuner is not None:
            self.tuner.request_stop()


@st.cache_resource(max_entries=1000, show_spinner=False)
def _tune_job(visitor: str) -> TuneJob:
    return TuneJob()


def tune_job() -> TuneJob:
    """The visitor's study (one at a time, on their runner): every tab of theirs sees it, and a closed tab
    leaves it searching, as their own runs go on."""
    return _tune_job(visitor_key())


@st.cache_resource(show_spinner=False)
def storage_for(url: str):
    return open_storage(url)


def storage():
    """The study storage this server uses (CHARRNN_TUNE_STORAGE, else tune.sqlite by the run store),
    opened once; FieldError when it cannot be."""
    return storage_for(storage_url())


def storage_text() -> str:
    return masked(storage_url())


def fixed_text() -> str:
    """What the next study keeps fixed (the Train page's settings for what does not vary), and how often
    its trials are evaluated."""
    config, varied = train_config(), {n for n in SPECS if st.session_state[f"tune_vary_{n}"]}
    varied |= {"lr", "optimizer"} if varied & {"lr_sgd", "lr_adam"} else set()
    names = [n for n in SPECS if n in HP_FIELDS and n not in varied] + ["val_tokens"]
    kept = ", ".join(f"{n} {shown(getattr(config, n))}" for n in names)
    epochs = st.session_state["tune_epochs"]
    every = eval_cadence(epochs) if isinstance(epochs, int) and epochs > 0 else 1
    return f"Fixed, from the Train page: {kept}; device {config.device}. Held-out evaluation every {every} epochs."


def pruning_text() -> str | None:
    """Said before Start when the pruner cannot end a trial early with these epochs (too few figures)."""
    epochs = st.session_state["tune_epochs"]
    if not isinstance(epochs, int) or epochs < 1:
        return None
    note = pruning_note(st.session_state["tune_pruner"], eval_cadence(epochs), epochs)
    return f"Note: {note} (epochs per trial)." if note else None


def shown(value) -> str:
    """A setting as the page writes it: numbers short (0.25, 1e-05, 512), words as they are."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def set_error(field: str, message: str):
    st.session_state.setdefault("tune_errors", {})[field] = one_line(message)


def errors() -> dict:
    return st.session_state.get("tune_errors", {})


def space_from_form() -> dict:
    """The varied hyperparameters' dimensions; an error under each field that does not parse."""
    space = {}
    for name in SPECS:
        if st.session_state[f"tune_vary_{name}"]:
            try:
                space[name] = parse_dimension(name, st.session_state[f"tune_spec_{name}"])
            except ValueError as e:
                set_error(name, str(e))
    if not space and not errors():
        set_error("space", "Vary at least one hyperparameter: tick one above.")
    return space


def check_demo_caps(space: dict, base, text_chars: int) -> None:
    """In demo mode, an error at each field above a cap: trials, epochs, the varied num_hiddens' largest
    value, and the caps of the space's largest shapes (each cell and model with the largest num_hiddens
    and num_layers, the Train page's settings for what does not vary) under Start."""
    if not capped():
        return
    checks = [("trials", demo.over_cap("trials", st.session_state["tune_trials"]))]
    checks.append(("epochs", demo.over_cap("num_epochs", base.num_epochs)))
    if "num_hiddens" in space:
        checks.append(("num_hiddens", demo.over_cap("num_hiddens", max(space["num_hiddens"].bounds()))))
    for value in space["max_tokens"].bounds() if "max_tokens" in space else []:  # 0: the whole text
        checks += [("max_tokens", problem) for problem in demo.check_caps({"max_tokens": value}, text_chars)]
    for point in corners(space):
        largest = {k: v for k, v in asdict(replace(base, **point)).items() if k != "num_epochs"}
        checks += [("start", problem) for problem in demo.check_caps(largest, text_chars)]
    for field, problem in checks:  # a field's first problem, and each problem once
        if problem and field not in errors() and problem not in errors().values():
            set_error(field, problem)


def start_tune():
    """on_click of Start: check the form, open the study, run it on this session's runner."""
    st.session_state["tune_errors"] = {}
    space = space_from_form()
    if errors():
        return
    if runner().running():
        set_error("start", "This session is training already (see the Train page); stop it or let it finish first.")
        return
    try:
        epochs = st.session_state["tune_epochs"]
        every = eval_cadence(epochs)  # enough held-out figures a trial for the pruner
        base = train_config(num_epochs=epochs, predict_every=10 if epochs % 10 == 0 else epochs, eval_every=every)
        corpus = load_chosen_corpus(0 if "max_tokens" in space else base.max_tokens)  # trials cut their own
        check_demo_caps(space, base, len(corpus))
        if errors():
            return
        device = resolve_device(base.device)
        search = Search(
            st.session_state["tune_name"].strip(),
            space,
            base,
            st.session_state["tune_trials"],
            st.session_state["tune_sampler"],
            st.session_state["tune_pruner"],
        )
        tuner = Tuner(search, corpus, runner=runner(), device_lock=device_lock(str(device)), store=RunStore())
        study = tuner.prepare(device)
        if auth.user() is not None:  # a study records who started it, as its trials' runs do (ui.visitor)
            study.set_user_attr("owner", auth.user())
    except FieldError as e:
        set_error(e.dim if e.field == "space" and e.dim in SPECS else e.field, str(e))
        return
    except (ValueError, CorpusError, OSError, sqlite3.Error) as e:  # the text, a Train setting, the store
        set_error("start", str(e))
        return
    tune_job().start(tuner)
    st.session_state["tune_study"] = search.study  # the picker shows the study just started
    st.session_state.pop("tune_tune_study", None)


def stop_tune():
    tune_job().stop()


def generate_from(run_id: str):
    """on_click of "Generate from it": the Generate page on that run's checkpoint of its best held-out
    evaluation (the trial's value), else its last."""
    best = RunStore().best_checkpoint(run_id)
    set_setting("gen_model", "saved run")
    set_setting("gen_run", run_id)
    set_setting("gen_epoch", best["epoch"] if best else None)
    switch_to("pages/generate.py")


def train_fully(config: dict):
    """on_click of "Train it fully": the Train page with the trial's settings (the number of epochs, the
    evaluation cadence, fitted to the trial's budget, and the device stay the Train page's own)."""
    for name in HP_FIELDS:
        if name in config and name not in ("num_epochs", "eval_every", "device"):
            set_setting(f"hp_{name}", config[name])
    switch_to("pages/train.py")
