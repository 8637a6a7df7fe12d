"""Streamlit glue shared by the pages: settings in session state, caches, the session's runner.

Pages import this module and the core; this module is the only place that knows how Streamlit
state is laid out. The core (`charrnn`) never imports streamlit.
"""

import html
import io
import re
import sqlite3
import threading
import time
from dataclasses import asdict, fields
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch
from plotly.subplots import make_subplots

from charrnn.batches import SeqDataLoader
from charrnn.checkpoint import load_checkpoint, make_checkpoint
from charrnn.data import CorpusError, fallback_text, find_time_machine, load_corpus
from charrnn.device import describe, resolve_device
from charrnn.runner import Runner
from charrnn.store import RunStore, home_dir
from charrnn.train import TrainConfig

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
    "gen_run": None,
    "gen_model": "trained in this session",
    "gen_prefix": "time traveller",
    "gen_num": 50,
    "gen_decoding": "greedy (the book)",
    "gen_temperature": 1.0,
    "gen_top_k": 0,
    "gen_seed": 0,
}


def literal(text: str) -> str:
    """Text for a Markdown-rendering element (st.error, st.success, ...) shown exactly as written."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$])", r"\\\1", text)


def error(message: str):
    """st.error for messages that may quote file names or user text."""
    st.error(literal(message))


def init_state():
    for key, default in DEFAULTS.items():
        st.session_state.setdefault(key, default)


def bound(name: str, page: str, form: bool = False) -> dict:
    """Widget arguments that tie a widget on `page` to the permanent setting `name`.

    Use as `st.slider(..., **ui.bound("hp_lr", "train"))`. Widgets in a form cannot have an
    on_change callback: the form's submit callback calls `keep_all(page)` instead.
    """
    key = f"{page}_{name}"
    if key not in st.session_state:
        st.session_state[key] = st.session_state[name]
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
        if snap.status != "idle":
            st.caption("Training in this session")
            if snap.running:  # the epoch count would go stale here: the live view is on the Train page
                st.text(f"running, {snap.config.num_epochs} epochs")
            else:
                st.text(f"{snap.status} after {len(snap.history)} of {snap.config.num_epochs} epochs")


# ---- corpus ----------------------------------------------------------------------------------


@st.cache_data(show_spinner="Loading the text...", max_entries=16)
def _load(source: str, mode: str, max_tokens: int, data: bytes | None):
    return load_corpus(data if source == "upload" else source, mode=mode, max_tokens=max_tokens)


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
    data = None
    if source == "upload":
        data = (st.session_state.get("upload") or {}).get("data")
        if data is None:
            raise CorpusError("no text uploaded yet; upload a .txt file on the Data page, or pick another source.")
    if source == "time_machine" and st.session_state.get("tm_error") and find_time_machine() is None:
        raise CorpusError(corpus_status()[1])  # do not retry a failed download on every rerun
    download = source == "time_machine" and find_time_machine() is None
    try:
        corpus = _load(source, mode, int(max_tokens), data)
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


# ---- training --------------------------------------------------------------------------------


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


def thin(history: list, most: int = 2000) -> list:
    """At most ~`most` evenly spaced points and always the last (each redraw resends the whole chart)."""
    step = max(1, len(history) // most)
    points = history[::step]
    if points and points[-1] is not history[-1]:
        points.append(history[-1])
    return points


def perplexity_layout(fig: go.Figure, points: int, revision: str) -> go.Figure:
    fig.update_xaxes(dtick=1 if points <= 10 else None)  # no "epoch 1.5" ticks on short runs
    fig.update_layout(
        xaxis_title="epoch",
        yaxis_title="training perplexity",
        height=340,
        margin=dict(l=10, r=10, t=30, b=10),
        uirevision=revision,
    )
    return fig


def history_figure(history) -> go.Figure:
    """Perplexity per epoch; long histories are thinned to ~2,000 points."""
    points = thin(history)
    fig = go.Figure(
        go.Scatter(
            x=[h.epoch for h in points],
            y=[h.perplexity for h in points],
            mode="lines+markers" if len(points) < 60 else "lines",
            name="perplexity",
        )
    )
    return perplexity_layout(fig, len(points), "ppl")


def eta_text(history, num_epochs: int) -> str:
    if not history:
        return "first epoch running..."
    last = history[-1]
    left = (num_epochs - last.epoch) * last.elapsed / last.epoch
    return f"epoch {last.epoch} of {num_epochs}, about {left:,.0f} s left"


# ---- minibatches (Data page) -----------------------------------------------------------------


def token_label(token: str) -> str:
    """A token as a label people can see: whitespace tokens by their repr."""
    return repr(token) if token.isspace() else token


def visible_chars(text: str) -> str:
    return text.replace(" ", "·").replace("\n", "⏎")


def num_minibatches(corpus: list[int], b: int, t: int, sampling: str, seed: int) -> int:
    """Minibatches in the first epoch; ValueError naming the field when the text is too short."""
    return len(SeqDataLoader(corpus, b, t, sampling, seed=seed))


def nth_minibatch(corpus: list[int], b: int, t: int, sampling: str, seed: int, k: int):
    """(X, Y) of the k-th (1-based) minibatch of the first epoch."""
    for i, (X, Y) in enumerate(SeqDataLoader(corpus, b, t, sampling, seed=seed), 1):
        if i == k:
            return X.tolist(), Y.tolist()
    raise ValueError(f"minibatch must be between 1 and {i}, not {k}")


def minibatch_map(num_tokens: int, b: int, t: int, sampling: str, seed: int) -> list[int]:
    """Which minibatch (1-based; 0 = none) reads each corpus position in the first epoch.

    The loader itself is run over the positions 0..n-1, so the picture is the real layout."""
    owner = [0] * num_tokens
    for k, (X, _) in enumerate(SeqDataLoader(list(range(num_tokens)), b, t, sampling, seed=seed), 1):
        for p in X.flatten().tolist():
            owner[p] = k
    return owner


def layout_figure(n: int, b: int, t: int, seed: int) -> go.Figure:
    """The first n tokens wrapped into the b sequential rows, coloured by minibatch, for both samplings."""
    seq, rnd = minibatch_map(n, b, t, "sequential", seed), minibatch_map(n, b, t, "random", seed)
    offset = next(i for i, owner in enumerate(seq) if owner)
    width = (n - offset - 1) // b  # the length of one sequential row

    def grid(owner):
        return [[owner[offset + r * width + j] or None for j in range(width)] for r in range(b)]

    fig = make_subplots(rows=1, cols=2, subplot_titles=("sequential: each row continues", "random: unrelated windows"))
    for col, owner in ((1, seq), (2, rnd)):
        fig.add_trace(
            go.Heatmap(
                z=grid(owner),
                coloraxis="coloraxis",
                hovertemplate="row %{y}, position %{x}: minibatch %{z}<extra></extra>",
            ),
            1,
            col,
        )
    fig.update_layout(
        coloraxis=dict(colorscale="Turbo", colorbar_title="minibatch"), height=360, margin=dict(l=10, r=10, t=40, b=10)
    )
    fig.update_yaxes(autorange="reversed", title_text="row")
    fig.update_xaxes(title_text="position in the row")
    return fig


# ---- models (Train and Generate pages) -------------------------------------------------------


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
        f'<span style="color: #888">{html.escape(visible_chars(prefix))}</span>'
        f'<span style="color: #1f77b4; font-weight: bold">{html.escape(visible_chars(generated))}</span></div>'
    )


# ---- the run store (Runs and Generate pages) -------------------------------------------------

RESUMABLE = ("stopped", "interrupted")
KEY_HPARAMS = ("num_hiddens", "num_steps", "batch_size", "lr", "num_epochs", "clip", "sampling", "max_tokens", "seed")
PAGES = ("data", "train", "generate", "runs")
GEN_MODELS = ["trained in this session", "saved run", "checkpoint file"]  # the prefixes of the per-page widget keys


def set_setting(name: str, value):
    """Change a permanent setting from a callback; the pages' widgets are reseeded from it."""
    st.session_state[name] = value
    for page in PAGES:
        st.session_state.pop(f"{page}_{name}", None)


def keep_valid(name: str, page: str, options: list, many: bool = False):
    """Drop from setting `name` (and its widget on `page`) choices that are gone, e.g. a deleted run."""
    for key in (name, f"{page}_{name}"):
        if key not in st.session_state:
            continue
        value = st.session_state[key]
        if many:
            st.session_state[key] = [v for v in value if v in options]
        elif value not in options:
            st.session_state[key] = options[0] if options else None


def switch_to(page: str):
    """Ask for a page switch from a callback (st.switch_page does nothing there); see `follow_switch`."""
    st.session_state["switch_to"] = page


def follow_switch():
    """Called first by a page whose buttons ask for a switch (AppTest runs a page without the entry file)."""
    page = st.session_state.pop("switch_to", None)
    if page:
        st.switch_page(page)


def stored_runs() -> list[dict]:
    """Every run in the store, newest first; an st.error and a stopped page when the store cannot be opened.

    Opening the store marks runs whose process died as interrupted."""
    try:
        return RunStore().runs()
    except (OSError, sqlite3.Error) as e:
        error(f"Run store: cannot open it in {home_dir()} ({e}); set CHARRNN_HOME to a writable folder.")
        st.stop()


def run_labels(runs: list[dict]) -> dict:
    """id -> the run's name; a name that several runs share gets the id added."""
    names = [r["name"] for r in runs]
    return {r["id"]: r["name"] if names.count(r["name"]) == 1 else f"{r['name']} ({r['id']})" for r in runs}


def runs_table(runs: list[dict]) -> pd.DataFrame:
    rows = []
    for r in runs:
        rows.append(
            {
                "name": r["name"],
                "status": r["status"],
                "reason": r["reason"],
                **{k: r["config"].get(k) for k in KEY_HPARAMS},
                "epochs": r["epochs"],
                "final perplexity": r["final_perplexity"],
                "best perplexity": r["best_perplexity"],
                "tokens/s": r["tokens_per_sec"],
                "device": r["device"],
                "duration (s)": r["duration"],
                "created": pd.Timestamp(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["created"]))),
                "text": f"{r['corpus'].get('name', '?')}, {r['corpus'].get('mode', '?')}",
                "id": r["id"],
            }
        )
    return pd.DataFrame(rows)


RUNS_COLUMNS = {
    "final perplexity": st.column_config.NumberColumn(format="%.3f"),
    "best perplexity": st.column_config.NumberColumn(format="%.3f"),
    "tokens/s": st.column_config.NumberColumn(format="%.0f"),
    "duration (s)": st.column_config.NumberColumn(format="%.1f"),
    "lr": st.column_config.NumberColumn(format="%g"),
    "created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
}


def runs_figure(runs: list[dict], labels: dict) -> go.Figure:
    """The perplexity curves of several runs on one chart, one trace per run."""
    fig, longest = go.Figure(), 0
    for r in runs:
        points = thin(RunStore().history(r["id"]))
        longest = max(longest, len(points))
        fig.add_trace(
            go.Scatter(
                x=[p["epoch"] for p in points],
                y=[p["perplexity"] for p in points],
                mode="lines+markers" if len(points) < 60 else "lines",
                name=html.escape(labels[r["id"]]),  # Plotly reads tags in names; a run's name is text
            )
        )
    fig.update_layout(legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    return perplexity_layout(fig, longest, "runs")


def config_table(runs: list[dict], labels: dict):
    """The runs' settings side by side (a column per run); the rows that differ are highlighted."""
    rows = {name: [str(r["config"].get(name, "")) for r in runs] for name in (f.name for f in fields(TrainConfig))}
    rows["text"] = [str(r["corpus"].get("name", "")) for r in runs]
    rows["text mode"] = [str(r["corpus"].get("mode", "")) for r in runs]
    rows["text SHA-1"] = [str(r["corpus"].get("sha1", ""))[:12] for r in runs]
    rows["device used"] = [r["device"] for r in runs]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=[labels[r["id"]] for r in runs])
    table.insert(0, "differs", [len(set(values)) > 1 for values in rows.values()])
    return table.style.apply(lambda row: ["background-color: #ffe08a" if row["differs"] else ""] * len(row), axis=1)


def checkpoint_download(run: dict) -> tuple[bytes, str, str] | None:
    """(bytes, file name, caption) of a run's last checkpoint, or None when it has none."""
    last = RunStore().last_checkpoint(run["id"])
    if last is None:
        return None
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", run["name"]).strip("-") or run["id"]
    data = Path(last["path"]).read_bytes()
    return data, f"{name}-epoch{last['epoch']}.pt", f"last checkpoint: epoch {last['epoch']}, {len(data) / 1e6:.1f} MB"


def rename_run(run_id: str):
    """on_click of Rename: the new name is in the run's text input."""
    st.session_state.pop("runs_error", None)
    try:
        RunStore().rename(run_id, st.session_state.get(f"runs_name_{run_id}", ""))
    except ValueError as e:
        st.session_state["runs_error"] = f"New name: {e}"


def ask_delete(run_id: str | None):
    """on_click of Delete (asks to confirm) and of Cancel (None)."""
    st.session_state["runs_confirm_delete"] = run_id


def delete_run(run_id: str):
    """on_click of the confirmation: the run, its curve and its checkpoint files go."""
    st.session_state.pop("runs_confirm_delete", None)
    st.session_state.pop("runs_error", None)
    if RunStore().run(run_id)["status"] == "running":
        st.session_state["runs_error"] = "Delete: the run is still training; stop it on the Train page first."
        return
    RunStore().delete(run_id)
    set_setting("runs_selected", [i for i in st.session_state["runs_selected"] if i != run_id])


def corpus_for_run(run: dict):
    """The text a stored run trained on, reloaded and checked by its SHA-1; raises CorpusError saying what to do."""
    fp = run["corpus"]
    if fp["source"] in ("time_machine", "fallback"):
        corpus = _load(fp["source"], fp["mode"], int(fp["max_tokens"] or 0), None)
    else:
        data = (st.session_state.get("upload") or {}).get("data")
        if data is None:
            raise CorpusError(
                f"the run trained on {fp['name']}; upload that file on the Data page (source: Uploaded .txt) first."
            )
        corpus = _load("upload", fp["mode"], int(fp["max_tokens"] or 0), data)
    if corpus.sha1 != fp["sha1"]:
        raise CorpusError(f"the text uploaded on the Data page is not {fp['name']}, which the run trained on.")
    return corpus


def resume_run(run_id: str):
    """on_click of Resume: continue the run from its last checkpoint on this session's runner, then show Train."""
    st.session_state.pop("runs_error", None)
    try:
        run = RunStore().run(run_id)
        corpus = corpus_for_run(run)
        config = TrainConfig.from_dict({**run["config"], "device": st.session_state["hp_device"]}).validate()
        device = str(resolve_device(config.device))
        every = st.session_state["checkpoint_every"]
        runner().start(corpus, config, device_lock(device), resume=run_id, checkpoint_every=every)
    except (ValueError, CorpusError) as e:
        st.session_state["runs_error"] = f"Resume: {e}"
        return
    switch_to("pages/train.py")


def train_again(run_id: str):
    """on_click of "Train again with these settings": the run's config into the Train form, then show Train."""
    run = RunStore().run(run_id)
    config = TrainConfig.from_dict(run["config"])
    for name in HP_FIELDS:
        value = getattr(config, name)
        if name == "device" and value not in device_choices():
            continue  # a device this machine lacks: keep the session's
        set_setting(f"hp_{name}", type(DEFAULTS[f"hp_{name}"])(value))
    if run["corpus"].get("source") in ("time_machine", "fallback"):
        set_setting("corpus_source", run["corpus"]["source"])
    if run["corpus"].get("mode") in ("book", "raw"):
        set_setting("corpus_mode", run["corpus"]["mode"])
    switch_to("pages/train.py")


def generate_from(choice: str, run_id: str | None = None):
    """on_click: open Generate on a saved run, or on the checkpoint file uploaded on the Runs page."""
    set_setting("gen_model", choice)
    if run_id is not None:
        set_setting("gen_run", run_id)
    switch_to("pages/generate.py")


def runs_with_checkpoints() -> list[dict]:
    runs = stored_runs()
    store = RunStore()
    return [r for r in runs if store.last_checkpoint(r["id"]) is not None]


@st.cache_resource(max_entries=4, show_spinner=False)
def _checkpoint_model(path: str, mtime_ns: int, device: str):
    """A saved checkpoint's (model, vocab, epoch), shared read-only (generation never changes weights)."""
    model, vocab, ckpt = load_checkpoint(path, device=device)
    return model, vocab, ckpt.get("epoch")


def run_model(run_id: str):
    """(model, vocab, epoch) of a stored run's last checkpoint; raises CheckpointError or ValueError."""
    last = RunStore().last_checkpoint(run_id)
    if last is None:
        raise ValueError("this run has no checkpoint; pick another run")
    path = Path(last["path"])
    return _checkpoint_model(str(path), path.stat().st_mtime_ns, str(resolve_device(st.session_state["hp_device"])))


def saved_run_model():
    """Generate's run picker: (model, vocab) of the chosen run's last checkpoint; stops the page when none."""
    saved = runs_with_checkpoints()
    if not saved:
        st.info("No saved run has a checkpoint yet: train one on the Train page (see the Runs page).")
        st.stop()
    labels = run_labels(saved)
    keep_valid("gen_run", "generate", list(labels))
    run_id = st.selectbox(
        "Run (its last checkpoint)", list(labels), format_func=labels.get, **bound("gen_run", "generate")
    )
    try:
        model, vocab, epoch = run_model(run_id)
    except ValueError as e:  # CheckpointError, or a device that is not there
        error(f"Run: {e}")
        st.stop()
    st.caption(f"The run's checkpoint after epoch {epoch}.")
    return model, vocab


def checkpoint_file_model():
    """Generate's uploader: (model, vocab) of the uploaded checkpoint (or the one uploaded earlier, e.g. on Runs)."""
    file = st.file_uploader("A charrnn checkpoint (.pt)", type=["pt"], key="gen_upload")
    if file is None:
        cached = st.session_state.get("gen_checkpoint")
        if cached is None:
            st.stop()
        st.caption("Using the checkpoint uploaded earlier:")
        st.text(cached[0][1])
        return cached[1], cached[2]
    try:
        return load_checkpoint_upload(file)
    except ValueError as e:  # CheckpointError, or a device that is not there
        error(f"Checkpoint file: {e}")
        st.stop()
