"""The visitor's training: its runner (a child process per run, `ui.visitor`), the device lock, the
callbacks, the Start button that says when a run will queue, and the sidebar's state of the visitor's run."""

import io
import sqlite3
import sys

import streamlit as st
import torch

from charrnn.book import PRESETS, preset
from charrnn.data import CorpusError
from charrnn.device import describe, resolve_device
from charrnn.runs import demo
from charrnn.runs.checkpoint import make_checkpoint
from charrnn.runs.devicequeue import DeviceQueue
from charrnn.runs.runner import Runner
from ui import auth
from ui.corpus import load_chosen_corpus
from ui.demo import capped, require_caps
from ui.display import eta_text
from ui.state import DEFAULTS, HP_FIELDS, SOURCES, keep_all, set_setting, train_config

# Every run of the visitor (Train, Resume, Book, Tune's trials) trains through its runner; pages import it here.
from ui.visitor import keep_cookie, pending_link, runner, show_your_link


@st.cache_resource(show_spinner=False)
def device_lock(device: str) -> DeviceQueue:
    """One first-in, first-out line per device, shared by every session: two runs never fight over
    it, and a second session's Start waits its turn instead of being refused."""
    return DeviceQueue()


def device_choices() -> list[str]:
    return ["auto", "cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def device_text(name: str) -> str:
    try:
        return describe(resolve_device(name))
    except ValueError as e:
        return f"unavailable ({e})"


def sidebar(pages):
    """Shown on every page: the page links, the device in use and the state of the visitor's run."""
    with st.sidebar:
        for page in pages:
            st.page_link(page)
        if capped():
            st.caption(demo.caption())
        st.caption("Device")
        st.text(device_text(st.session_state["hp_device"]))
        # Less space above every page's title: at 1366x768 the Train page's chart and figures fit below it.
        st.html("<style>.stMainBlockContainer {padding-top: 3rem}</style>")
        run_state()
        auth.sidebar()
        show_your_link()
        keep_cookie()
    pending_link()


def chained() -> bool:
    """Whether a queue of this session (the Book page's chapters, the Tune page's study) is between or
    inside its runs: the runner alone is idle for a moment between two of them."""
    if "ui.book" in sys.modules and sys.modules["ui.book"].any_running():
        return True
    tune = sys.modules.get("ui.tune")  # imported only once the Tune page was opened (it loads optuna)
    return tune is not None and tune.tune_job().running()


def run_state_text() -> str | None:
    """The sidebar's line on the visitor's run, true at the moment it is drawn; None before any run."""
    snap = runner().snapshot()
    if snap.config is None:  # None until the first run (a refused start included)
        return "the next run of a queue is starting" if chained() else None
    done = snap.history[-1].epoch if snap.history else 0
    if snap.status == "queued":
        return f"queued for the device, {snap.config.num_epochs} epochs"
    if snap.running:
        return f"running, epoch {done} of {snap.config.num_epochs}"
    if chained():
        return f"the next run of a queue is starting (the last one {snap.status})"
    return f"{snap.status} after {done} of {snap.config.num_epochs} epochs"


def run_state():
    """The visitor's run in the sidebar, redrawn every 2 s while anything of the session trains (a run
    started on another page, a Book or Tune queue), then once more when it ends."""
    busy = runner().running() or chained()

    @st.fragment(run_every=2.0 if busy else None)
    def view():
        if busy and not (runner().running() or chained()):
            st.rerun()  # it ended: one full rerun stops the polling and redraws the page
        text = run_state_text()
        if text is not None:
            st.caption("Your run")
            st.text(text)

    view()


def start_training(**overrides):
    """on_click callback: start the visitor's run with the form's settings (errors go to session state)."""
    st.session_state.pop("train_error", None)
    try:
        config = train_config(**overrides).validate()
        corpus = load_chosen_corpus(config.max_tokens)
        require_caps(config, len(corpus), len(corpus.vocab))  # in demo mode only; max_tokens 0: the text
        device = str(resolve_device(config.device))
        every = st.session_state["checkpoint_every"]
        if runner().start(corpus, config, device_lock(device), checkpoint_every=every, queue=True):
            st.session_state["train_settings"] = False  # the settings fold away: the run's chart is in view
    except (ValueError, CorpusError, OSError, sqlite3.Error) as e:  # a store that cannot open says why
        st.session_state["train_error"] = str(e)


def submit_training():
    """on_click of the Train form's Start: save the form into the settings, then start."""
    keep_all("train")
    start_training()
    st.session_state["_train_pressed"] = True  # the button's fragment reruns the whole page (see start_button)


def settings_label(snap) -> str:
    """The settings' expander label: why Start is off while the visitor's run is in flight, true at every
    moment (the page reruns when the run leaves the queue and when it ends)."""
    if snap.status == "queued":
        return "Settings (Start is off while your run waits in line for the device; Cancel takes it out)"
    if snap.running:
        return "Settings (Start is off while your run trains; Stop ends it)"
    return "Settings"


CUSTOM = "your settings"  # the preset picker's entry for settings that match no preset


def preset_fields(name: str) -> dict:
    """Every setting a preset gives (the defaults, then its own), the device aside: it stays the visitor's."""
    return {k: v for k, v in {**{k: DEFAULTS[f"hp_{k}"] for k in HP_FIELDS}, **preset(name)}.items() if k != "device"}


def matching_preset() -> str | None:
    """The preset whose settings the form holds now, None when it holds another mix."""
    s = st.session_state
    return next((n for n in PRESETS if all(s[f"hp_{k}"] == v for k, v in preset_fields(n).items())), None)


def preset_picker():
    """The Train page's preset picker: pick one, and "Fill the fields" sets every field from it; beside them,
    which preset the fields hold now. The picker is the widget's own (never set from the fields: a value set
    while the browser sends another would read as a pick, and fill the fields over what was just typed)."""
    c = st.columns([2, 1, 3], vertical_alignment="bottom")
    c[0].selectbox(
        "Preset",
        list(PRESETS),
        key="train_preset",
        help="book-rnn: 8.5's recipe. book-gru, book-lstm, book-deep-lstm: chapter 9 as the book ran it. "
        "whole-text: an LSTM with dropout, weight drop and Adam on the whole text, kept at its best epoch, its "
        "predictions mixed with the 7-gram of its training text.",
    )
    c[1].button("Fill the fields", on_click=apply_preset, key="train_preset_fill")
    named = matching_preset()
    c[2].caption(f"The fields hold the {named} preset." if named else f"The fields hold {CUSTOM}.")


def apply_preset():
    for k, v in preset_fields(st.session_state["train_preset"]).items():
        set_setting(f"hp_{k}", v)


def settings_text() -> str:
    """The Train page's line on its settings, true at every moment: the text, and whether they are the
    book's recipe (or what differs from it)."""
    s = st.session_state
    text = f"Text: {SOURCES[s['corpus_source']]}, {s['corpus_mode']} preprocessing (the Data page)."
    changed = [
        f"{k} {s[f'hp_{k}']:g}" if isinstance(s[f"hp_{k}"], float) else f"{k} {s[f'hp_{k}']}"
        for k in HP_FIELDS
        if k != "device" and s[f"hp_{k}"] != DEFAULTS[f"hp_{k}"]
    ]
    if (s["corpus_source"], s["corpus_mode"]) != (DEFAULTS["corpus_source"], DEFAULTS["corpus_mode"]):
        changed.insert(0, "the text")
    named = matching_preset()
    if named not in (None, "book-rnn") and not changed[:1] == ["the text"]:
        recipe = f"Settings: the {named} preset."
    elif not changed:
        recipe = "Settings: the book's recipe."
    else:  # a few, so that the line stays one line at 1366 px
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        recipe = f"Settings: the book's recipe but {', '.join(changed[:3])}{more}."
    return f"{text} {recipe}"


def ahead_in_line() -> int:
    """Runs of this app that a run started now on the form's device would wait behind (0: it trains at once)."""
    try:
        line = device_lock(str(resolve_device(st.session_state["hp_device"])))
    except ValueError:  # a device that is not there: Start says so
        return 0
    return (line.holder() is not None) + len(line.waiting())


def start_button(disabled: bool):
    """Start, or "Queue (N ahead)" with a caption when the device is busy, checked every 2 s while the
    visitor's run is not in flight, so the label is true when pressed."""

    @st.fragment(run_every=None if disabled else 2.0)
    def view():
        if st.session_state.pop("_train_pressed", False) or (not disabled and runner().running()):
            st.rerun()  # pressed here, or started in another tab of this visitor: the whole page shows the run
        ahead = 0 if disabled else ahead_in_line()
        label = f"Queue ({ahead} ahead)" if ahead else "Start"
        st.button(label, type="primary", on_click=submit_training, disabled=disabled, key="train_start")
        if ahead:
            st.caption(
                f"The device is busy: your run will wait in line behind {ahead} run{'s' if ahead > 1 else ''} "
                "of this app and start by itself."
            )

    view()


def stop_training():
    runner().stop()


def quick_train():
    """on_click callback: the book's recipe (The Time Machine, book mode, defaults) on the chosen device."""
    for key in ("corpus_source", "corpus_mode"):
        st.session_state[key] = DEFAULTS[key]
    for name in HP_FIELDS:
        if name != "device":
            st.session_state[f"hp_{name}"] = DEFAULTS[f"hp_{name}"]
    start_training()


def while_own_run_trains() -> bool:
    """When the visitor's run is training: say that its model comes when it ends, follow it, and return True."""
    if not runner().running():
        return False
    st.info("Your run is training; its model appears here when it ends.")
    wait_for_run()
    return True


def wait_for_run():
    """A progress bar that follows the visitor's run and reruns the page once it ends."""

    @st.fragment(run_every=1.0)
    def progress():
        s = runner().snapshot()
        if not s.running:
            st.rerun()
        st.progress(
            s.history[-1].epoch / s.config.num_epochs if s.history else 0.0,
            text=eta_text(s.history, s.config.num_epochs),
        )

    progress()


def queue_text(run: Runner) -> str:
    """Where the visitor's queued run stands: its place in line and a rough wait, from the progress
    of the run on the device (and, for the runs ahead in line, their epochs at that run's pace)."""
    line = run.device_queue
    place = run.place() or 1
    where = f"Queued: place {place} of {len(line.waiting()) if line is not None else 1} in line for the device"
    holder = line.holder() if line is not None else None
    if not isinstance(holder, Runner):
        return f"{where}; it starts by itself when the device is free."
    now = holder.snapshot()
    if not now.history:
        return f"{where}; the run on the device has just begun."
    pace = now.history[-1].elapsed / now.history[-1].epoch  # seconds per epoch of the run on the device
    left = (now.config.num_epochs - now.history[-1].epoch) * pace
    ahead = [t for t in line.waiting()[: place - 1] if isinstance(t, Runner)]
    left += sum(t.snapshot().config.num_epochs * pace for t in ahead)
    return f"{where}; about {left:,.0f} s to wait. It starts by itself; Cancel takes it out of the line."


def model_note(kind: str, cell: str) -> str | None:
    """A caption for the model the Train form picks, where the book's name would mislead: torch's GRU."""
    if (kind, cell) != ("concise", "gru"):
        return None
    return (
        "concise gru: torch's `nn.GRU` applies the reset gate after the recurrent product, "
        "`R_t ⊙ (H_t-1 W_hh + b_hn)`; the book's GRU (9.1, the scratch model) applies it before, "
        "`(R_t ⊙ H_t-1) W_hh`. A different function: its curve need not match the scratch GRU's."
    )


def mix_note(order: int, share: float) -> str:
    """A caption for the Train form's n-gram mix: what the model will predict with."""
    return (
        f"Predictions: {1 - share:g} × network + {share:g} × the Kneser-Ney {order}-gram of the training text. "
        "The network trains alone; held-out figures, samples and Generate use the mix."
    )


def checkpoint_bytes(snap) -> bytes:
    buffer = io.BytesIO()
    torch.save(make_checkpoint(snap.model, snap.vocab, snap.config, snap.corpus, snap.history), buffer)
    return buffer.getvalue()
