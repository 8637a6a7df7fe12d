"""Streamlit glue shared by the pages: settings in session state, caches, the session's runner.

Pages import this package and the core; it is the only place that knows how Streamlit state is
laid out. `ui.views` builds figures and tables from plain data; `ui.runs` is the glue of the run
store (Runs and Generate pages). The core (`charrnn`) never imports streamlit.
"""

import html
import io
import re
import threading
from dataclasses import asdict, fields
from pathlib import Path

import streamlit as st
import torch

from charrnn.batches import SeqDataLoader
from charrnn.checkpoint import load_checkpoint, make_checkpoint
from charrnn.data import CorpusError, fallback_text, find_time_machine, load_corpus
from charrnn.device import describe, resolve_device
from charrnn.runner import Runner
from charrnn.train import TrainConfig
from ui import views

SOURCES = {"time_machine": "The Time Machine", "fallback": "Offline fallback text", "upload": "Uploaded .txt"}


# Settings live in permanent session-state keys ("hp_<field>" for TrainConfig, "gen_*", ...). A
# widget never owns one: Streamlit drops the state of widgets a page switch removes, so each widget
# gets its own key per page, is seeded from the permanent value and writes back through a callback.
HP_FIELDS = [f.name for f in fields(TrainConfig) if f.name not in ("prefix", "predict_every")]


DEFAULTS = {
    **{f"hp_{k}": v for k, v in asdict(TrainConfig()).items() if k in HP_FIELDS},
    "corpus_source": "time_machine",
    "corpus_mode": "book",
    "live_paused": False,
    "checkpoint_every": 50,
    "runs_selected": [],
    "watch_run": None,  # a run of another session (or the CLI) watched live on the Train page
    "gen_run": None,
    "gen_model": "trained in this session",
    "gen_prefix": "time traveller",
    "gen_num": 50,
    "gen_decoding": "greedy (the book)",
    "gen_temperature": 1.0,
    "gen_top_k": 0,
    "gen_seed": 0,
}


URL = re.compile(r"https?://[^\s<>()\[\]`]+")


def literal(text: str) -> str:
    """Text for a Markdown-rendering element (st.error, st.success, ...) shown exactly as written.

    Web addresses are left as they are: Markdown turns them into links, where a backslash would show."""
    parts = URL.split(text)
    escaped = [re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$])", r"\\\1", part) for part in parts]
    urls = URL.findall(text) + [""]
    return "".join(e + u for e, u in zip(escaped, urls, strict=True))


def error(message: str):
    """st.error for messages that may quote file names or user text."""
    st.error(literal(message))


ENTRY_RAN = "_entry_ran"


def via_entry(page_file: str):
    """First call of every page file. A fresh server asked first for a page's own address (/train)
    runs that file alone, in Streamlit's legacy pages/ mode, without the entry file's settings and
    sidebar: send the session through the entry file, which then switches to the page asked for."""
    if ENTRY_RAN not in st.session_state:
        st.session_state["_wanted_page"] = f"pages/{Path(page_file).name}"
        st.switch_page("streamlit_app.py")


def entry_done():
    """Called by the entry file before it runs the page; finishes a `via_entry` detour."""
    st.session_state[ENTRY_RAN] = True
    st.session_state["_full_runs"] = st.session_state.get("_full_runs", 0) + 1  # see `bound`
    wanted = st.session_state.pop("_wanted_page", None)
    if wanted:
        st.switch_page(wanted)


def init_state():
    for key, default in DEFAULTS.items():
        st.session_state.setdefault(key, default)


def bound(name: str, page: str, form: bool = False) -> dict:
    """Widget arguments that tie a widget on `page` to the permanent setting `name`.

    Use as `st.slider(..., **ui.bound("hp_lr", "train"))`. Widgets in a form cannot have an
    on_change callback: the form's submit callback calls `keep_all(page)` instead.
    """
    key = f"{page}_{name}"
    # (Re)seed the widget when it is new, and also when it was missing from the last full run (a
    # page that ended early with st.stop): Streamlit keeps such a widget's value but the browser
    # mounts it afresh at its default (min_value), and would write that back. Setting the value
    # through session state makes Streamlit send it to the browser.
    run = st.session_state.get("_full_runs", 0)
    seen = st.session_state.setdefault("_bound_in_run", {})
    if key not in st.session_state or seen.get(key) != run - 1:
        st.session_state[key] = st.session_state[name]
    seen[key] = run
    return {"key": key} if form else {"key": key, "on_change": keep, "args": (name, page)}


def keep(name: str, page: str):
    st.session_state[name] = st.session_state[f"{page}_{name}"]


def keep_all(page: str):
    for name in DEFAULTS:
        if f"{page}_{name}" in st.session_state:
            keep(name, page)


def train_config(**overrides) -> TrainConfig:
    """The form's TrainConfig (the book's recipe until the user changes it)."""
    values = {k: st.session_state[f"hp_{k}"] for k in HP_FIELDS}
    return TrainConfig(**{**values, **overrides})


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
        st.caption("Device")
        st.text(device_text(st.session_state["hp_device"]))
        snap = runner().snapshot()
        if snap.config is not None:  # None until this session's first run (a refused start included)
            st.caption("Training in this session")
            if snap.running:  # the epoch count would go stale here: the live view is on the Train page
                st.text(f"running, {snap.config.num_epochs} epochs")
            else:
                st.text(f"{snap.status} after {len(snap.history)} of {snap.config.num_epochs} epochs")


@st.cache_data(show_spinner="Loading the text...", max_entries=16)
def _load(source: str, mode: str, max_tokens: int, data: bytes | None, name: str | None = None):
    return load_corpus(data if source == "upload" else source, mode=mode, max_tokens=max_tokens, name=name)


def corpus_status() -> tuple[str, str]:
    """(kind, text) about The Time Machine: kind is 'ok', 'missing' or 'error'."""
    try:
        path = find_time_machine()
    except CorpusError as e:
        return "error", str(e)
    if path is not None:
        how = "downloaded" if st.session_state.get("tm_downloaded") else "cached"
        return "ok", f"The Time Machine is {how}: {path}"
    if st.session_state.get("tm_error"):
        fb = fallback_text()
        alt = f"the offline fallback text ({fb[0]})" if fb else "no offline fallback text on this machine"
        return "missing", (
            f"Offline: {st.session_state['tm_error']} Meanwhile, upload a .txt on the Data page or pick {alt} there."
        )
    return "missing", "The Time Machine is not on this machine yet; it is downloaded (SHA-1 checked) on first use."


def load_chosen_corpus(max_tokens: int):
    """The corpus chosen on the Data page (source and mode in session state); raises CorpusError."""
    source, mode = st.session_state["corpus_source"], st.session_state["corpus_mode"]
    data, name = None, None
    if source == "upload":
        upload = st.session_state.get("upload") or {}
        data, name = upload.get("data"), upload.get("name")
        if data is None:
            raise CorpusError("no text uploaded yet; upload a .txt file on the Data page, or pick another source.")
    if source == "time_machine" and st.session_state.get("tm_error") and find_time_machine() is None:
        raise CorpusError(corpus_status()[1])  # do not retry a failed download on every rerun
    download = source == "time_machine" and find_time_machine() is None
    try:
        corpus = _load(source, mode, int(max_tokens), data, name)
    except CorpusError as e:
        if source == "time_machine":
            st.session_state["tm_error"] = str(e)
        raise
    if download:
        st.session_state["tm_downloaded"] = True
    return corpus


def current_corpus():
    """The chosen corpus cut to the form's max_tokens, or None after an st.error that says what to do."""
    try:
        return load_chosen_corpus(st.session_state["hp_max_tokens"])
    except CorpusError as e:
        st.error(f"Corpus: {e}")
        return None


def download_time_machine():
    """on_click callback of the Download buttons; a failure is kept and shown as the corpus status."""
    st.session_state.pop("tm_error", None)
    try:
        load_corpus("time_machine", max_tokens=1)
        st.session_state["tm_downloaded"] = True
    except CorpusError as e:
        st.session_state["tm_error"] = str(e)


@st.cache_resource(scope="session", on_release=lambda r: r.stop(), show_spinner=False)
def runner() -> Runner:
    """This browser session's trainer: closing the tab stops its run."""
    return Runner()


@st.cache_resource(show_spinner=False)
def device_lock(device: str) -> threading.Lock:
    """One lock per device, shared by every session, so two runs never fight over it."""
    return threading.Lock()


def start_training(**overrides):
    """on_click callback: start this session's run with the form's settings (errors go to session state)."""
    st.session_state.pop("train_error", None)
    try:
        config = train_config(**overrides).validate()
        corpus = load_chosen_corpus(config.max_tokens)
        device = str(resolve_device(config.device))
        runner().start(corpus, config, device_lock(device), checkpoint_every=st.session_state["checkpoint_every"])
    except (ValueError, CorpusError) as e:
        st.session_state["train_error"] = str(e)


def submit_training():
    """on_click of the Train form's Start: save the form into the settings, then start."""
    keep_all("train")
    start_training()


def stop_training():
    runner().stop()


def eta_text(history, num_epochs: int) -> str:
    if not history:
        return "first epoch running..."
    last = history[-1]
    left = (num_epochs - last.epoch) * last.elapsed / last.epoch
    return f"epoch {last.epoch} of {num_epochs}, about {left:,.0f} s left"


def show_run(history, config: TrainConfig, status: str, chart_key: str, summary: str = ""):
    """A run's progress, last epoch's figures, perplexity chart, the book's summary line once it has
    one, and greedy continuations: the Train page's own run and a watched one (`history`: EpochStats)."""
    num_epochs = config.num_epochs
    ended = f"{status} after {len(history)} of {num_epochs} epochs"
    done = history[-1].epoch / num_epochs if history else 0.0
    st.progress(done, text=eta_text(history, num_epochs) if status == "running" else ended)
    m = st.columns(4)
    if history:
        m[0].metric("perplexity", f"{history[-1].perplexity:.2f}")
        m[1].metric("tokens/s", f"{history[-1].tokens_per_sec:,.0f}")
        m[2].metric("gradient norm (before clipping)", f"{history[-1].grad_norm:.3f}")
        m[3].metric("minibatches clipped", f"{history[-1].clipped:.0%}")
    st.plotly_chart(views.history_figure(history), key=chart_key, config={"displaylogo": False})
    if summary:
        st.caption("Summary (as the book prints it)")
        st.code(summary, language=None)
    samples = [f"epoch {x.epoch:>5}: {x.sample}" for x in history if x.sample]
    st.caption(f"Greedy continuation of {config.prefix!r} every {config.predict_every} epochs")
    st.code("\n".join(samples[-50:]) or "(none yet)", language=None)


def num_minibatches(corpus: list[int], b: int, t: int, sampling: str, seed: int) -> int:
    """Minibatches in the first epoch; ValueError naming the field when the text is too short."""
    return len(SeqDataLoader(corpus, b, t, sampling, seed=seed))


def nth_minibatch(corpus: list[int], b: int, t: int, sampling: str, seed: int, k: int):
    """(X, Y) of the k-th (1-based) minibatch of the first epoch."""
    for i, (X, Y) in enumerate(SeqDataLoader(corpus, b, t, sampling, seed=seed), 1):
        if i == k:
            return X.tolist(), Y.tolist()
    raise ValueError(f"minibatch must be between 1 and {i}, not {k}")


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


def checkpoint_bytes(snap) -> bytes:
    buffer = io.BytesIO()
    torch.save(make_checkpoint(snap.model, snap.vocab, snap.config, snap.corpus, snap.history), buffer)
    return buffer.getvalue()


def load_checkpoint_upload(file):
    """(model, vocab) from an uploaded checkpoint, kept per session and file; raises CheckpointError."""
    key = (file.file_id, file.name)
    cached = st.session_state.get("gen_checkpoint")
    if cached is None or cached[0] != key:
        model, vocab, _ = load_checkpoint(file, device=resolve_device(st.session_state["hp_device"]))
        cached = st.session_state["gen_checkpoint"] = (key, model, vocab)
    return cached[1], cached[2]


def show_continuation(prefix: str, generated: str):
    """Prefix in grey and the generated characters in bold blue, as escaped text (never Markdown);
    spaces show as "·" so that a run of generated spaces is not mistaken for nothing."""
    st.html(
        '<div style="font-family: monospace; font-size: 1.05rem; white-space: pre-wrap; word-break: break-all">'
        f'<span style="color: #888">{html.escape(views.visible_chars(prefix))}</span>'
        f'<span style="color: #1f77b4; font-weight: bold">{html.escape(views.visible_chars(generated))}</span></div>'
    )
