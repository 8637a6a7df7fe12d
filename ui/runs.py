"""Glue of the run store for the Runs and Generate pages: the table, actions, saved models."""

import re
import sqlite3
from pathlib import Path

import streamlit as st

from charrnn.checkpoint import load_checkpoint
from charrnn.data import CorpusError
from charrnn.device import resolve_device
from charrnn.store import RunStore, home_dir
from charrnn.train import EpochStats, TrainConfig
from ui import (
    DEFAULTS,
    HP_FIELDS,
    _load,
    bound,
    device_choices,
    device_lock,
    error,
    load_checkpoint_upload,
    runner,
    show_run,
)

RESUMABLE = ("stopped", "interrupted")


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


@st.cache_resource(show_spinner=False)
def _shared_store(home: str) -> RunStore:
    return RunStore(home)


def shared_store() -> RunStore:
    """One store object per home folder for the live views, which read it every second: opening a
    store creates its schema. It holds paths only; each call connects."""
    return _shared_store(str(home_dir()))


def running_elsewhere() -> list[dict]:
    """Runs training now that this session did not start: another browser session's, or the CLI's."""
    own = runner()
    own_id, own_pid = own.snapshot().run_id, own.pid  # the pid covers the moment before the id is known
    store = shared_store()
    store.mark_interrupted()  # a run whose process died is not training
    return [r for r in store.runs(status="running") if r["id"] != own_id and r["pid"] != own_pid]


def watch(run_id: str, key: str):
    """A read-only live view of a stored run (its progress, curve and samples, from the run store),
    redrawn every second while it trains; nothing in it can change the run."""
    store = shared_store()

    def read():
        store.mark_interrupted()
        return store.run(run_id), [EpochStats(**row) for row in store.history(run_id)]

    live = read()[0]["status"] == "running"

    @st.fragment(run_every=1.0 if live else None)
    def view():
        try:
            run, history = read()
        except ValueError:  # deleted meanwhile
            st.info("That run is no longer in the store.")
            return
        if live and run["status"] != "running":
            st.rerun()  # it ended: one full rerun stops the polling
        st.caption(f"Watching {run['name']} (run {run_id}, on {run['device']}); read-only.")
        show_run(history, TrainConfig.from_dict(run["config"]), run["status"], f"{key}_watch_ppl")

    view()


def elsewhere(page: str):
    """Runs training elsewhere on this machine (the device lock made visible), and a read-only live
    view of the one picked; shows nothing when there is none."""
    labels = {r["id"]: f"{r['name']} (run {r['id']}, on {r['device']}, training)" for r in running_elsewhere()}
    watched = st.session_state["watch_run"]
    if watched is not None and watched not in labels:  # it ended: keep its final state in view until dropped
        try:
            r = shared_store().run(watched)
            labels[watched] = f"{r['name']} (run {watched}, on {r['device']}, {r['status']})"
        except ValueError:  # deleted
            pass
    if not labels:
        set_setting("watch_run", None)
        return
    options = [None, *labels]
    keep_valid("watch_run", page, options)
    with st.container(key=f"{page}_elsewhere", border=True):
        st.subheader("Training elsewhere on this machine")
        st.caption(
            "Started by another browser session or by `python -m charrnn train`. Only the session that "
            "started a run can stop it; anyone can watch it here."
        )
        st.selectbox(
            "Watch live (read-only)",
            options,
            format_func=lambda i: "(nothing)" if i is None else labels[i],
            **bound("watch_run", page),
        )
        if st.session_state["watch_run"] is not None:
            watch(st.session_state["watch_run"], page)


def run_labels(runs: list[dict]) -> dict:
    """id -> the run's name; a name that several runs share gets the id added."""
    names = [r["name"] for r in runs]
    return {r["id"]: r["name"] if names.count(r["name"]) == 1 else f"{r['name']} ({r['id']})" for r in runs}


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
        upload = st.session_state.get("upload") or {}
        if upload.get("data") is None:
            raise CorpusError(
                f"the run trained on {fp['name']}; upload that file on the Data page (source: Uploaded .txt) first."
            )
        corpus = _load("upload", fp["mode"], int(fp["max_tokens"] or 0), upload["data"], upload.get("name"))
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
