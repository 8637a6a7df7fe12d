"""This session's training: its runner (a child process per run), the device lock, the callbacks."""

import io
import sqlite3

import streamlit as st
import torch

from charrnn import demo
from charrnn.checkpoint import make_checkpoint
from charrnn.data import CorpusError
from charrnn.device import describe, resolve_device
from charrnn.devicequeue import DeviceQueue
from charrnn.runner import Runner
from ui.corpus import load_chosen_corpus
from ui.display import eta_text
from ui.state import DEFAULTS, HP_FIELDS, keep_all, train_config


@st.cache_resource(scope="session", on_release=lambda r: r.stop(), show_spinner=False)
def runner() -> Runner:
    """This browser session's trainer: closing the tab stops its run. Every run of the session (the
    Train page's, a resumed one, the Book page's, the Tune page's trials) trains through it, so its
    `started` is what demo mode lets this session change."""
    return Runner()


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
    """Shown on every page: the page links, the device in use and the state of this session's run."""
    with st.sidebar:
        for page in pages:
            st.page_link(page)
        if demo.demo_enabled():
            st.caption(demo.caption())
        st.caption("Device")
        st.text(device_text(st.session_state["hp_device"]))
        snap = runner().snapshot()
        if snap.config is not None:  # None until this session's first run (a refused start included)
            st.caption("Training in this session")
            if snap.running:  # the epoch count would go stale here: the live view is on the Train page
                st.text(f"{snap.status}, {snap.config.num_epochs} epochs")
            else:
                st.text(f"{snap.status} after {len(snap.history)} of {snap.config.num_epochs} epochs")


def start_training(**overrides):
    """on_click callback: start this session's run with the form's settings (errors go to session state)."""
    st.session_state.pop("train_error", None)
    try:
        config = train_config(**overrides).validate()
        corpus = load_chosen_corpus(config.max_tokens)
        demo.require_caps(config, len(corpus))  # in demo mode only; max_tokens 0 is the text's length
        device = str(resolve_device(config.device))
        every = st.session_state["checkpoint_every"]
        runner().start(corpus, config, device_lock(device), checkpoint_every=every, queue=True)
    except (ValueError, CorpusError, OSError, sqlite3.Error) as e:  # a store that cannot open says why
        st.session_state["train_error"] = str(e)


def submit_training():
    """on_click of the Train form's Start: save the form into the settings, then start."""
    keep_all("train")
    start_training()


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


def wait_for_run():
    """A progress bar that follows this session's run and reruns the page once it ends."""

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
    """Where this session's queued run stands: its place in line and a rough wait, from the progress
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


def checkpoint_bytes(snap) -> bytes:
    buffer = io.BytesIO()
    torch.save(make_checkpoint(snap.model, snap.vocab, snap.config, snap.corpus, snap.history), buffer)
    return buffer.getvalue()
