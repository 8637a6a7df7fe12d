"""The model Generate and Inside use: a saved run's checkpoint or an uploaded checkpoint file, always named.

The choice is pinned: the run and the checkpoint's epoch are settings (in the page's link), picked once
by default and then changed only by the user. A run that finishes elsewhere, or a newer checkpoint of
the run shown, never replaces it; a reload of the same link shows the same model.
"""

from dataclasses import dataclass

import streamlit as st

from charrnn.device import resolve_device
from charrnn.runs.checkpoint import load_checkpoint
from charrnn.runs.recorder import load_stored
from charrnn.runs.store import RunStore
from ui import views
from ui.demo import check_upload, upload_mb
from ui.display import error, literal
from ui.links import sync
from ui.runs import run_labels, stored_runs
from ui.state import bound, keep, keep_valid, set_setting
from ui.visitor import own_runs, runner

GEN_MODELS = ["saved run", "checkpoint file"]


@dataclass
class Chosen:
    """The model a page uses, and what it is called there."""

    model: object
    vocab: object
    label: str  # "run NAME (id ID), checkpoint of epoch 40 (the last)" or "checkpoint file NAME"
    ident: tuple  # the same model gives the same tuple: results made from another one are not its own
    run_id: str | None = None
    file: object = None  # the checkpoint file uploaded in this run of the page, if any


def load_checkpoint_upload(file):
    """(model, vocab) from an uploaded checkpoint, kept per session and file; raises CheckpointError, or
    ValueError for a file above the demo's checkpoint cap.

    The upload is read where Streamlit holds it, in memory: nothing of it is written to the run store or
    to disk (Generate and Inside use it from session state)."""
    check_upload(file, "checkpoint")
    key = (file.file_id, file.name)
    cached = st.session_state.get("gen_checkpoint")
    if cached is None or cached[0] != key:
        model, vocab, _ = load_checkpoint(file, device=resolve_device(st.session_state["hp_device"]))
        cached = st.session_state["gen_checkpoint"] = (key, model, vocab)
    return cached[1], cached[2]


def checkpoints(run_id: str) -> list[dict]:
    """The run's checkpoints, newest first."""
    return list(reversed(RunStore().checkpoints(run_id)))


def runs_with_checkpoints() -> list[dict]:
    return [r for r in stored_runs() or () if checkpoints(r["id"])]  # none when the store cannot be opened


def default_run(saved: list[dict]) -> str | None:
    """The run a page shows before the user picks one: the visitor's newest finished run, else the newest
    finished one, else the newest with a checkpoint; None while the visitor's own first run still trains."""
    mine = own_runs()
    finished = [r for r in saved if r["status"] == "finished"]
    for pool in ([r for r in finished if r["id"] in mine], finished):
        if pool:
            return pool[0]["id"]
    return None if runner().running() else saved[0]["id"]


@st.cache_resource(max_entries=4, show_spinner=False)
def _checkpoint_model(run_id: str, epoch: int, sha256: str, device: str):
    """A stored checkpoint's (model, vocab), shared read-only (generation never changes weights); its SHA-256 in
    the key, so a checkpoint written again (a resumed run's epoch) is loaded again."""
    model, vocab, _ = load_stored(RunStore(), run_id, epoch, device=device)
    return model, vocab


def run_model(run_id: str, epoch: int | None = None):
    """(model, vocab, epoch) of a stored run's checkpoint of `epoch` (None: its last); raises CheckpointError
    or ValueError."""
    found = [c for c in checkpoints(run_id) if epoch is None or c["epoch"] == epoch]
    if not found:
        raise ValueError(f"run {run_id} has no checkpoint{f' of epoch {epoch}' if epoch else ''}; pick another")
    c, device = found[0], str(resolve_device(st.session_state["hp_device"]))
    return (*_checkpoint_model(run_id, c["epoch"], c["sha256"], device), c["epoch"])


def pick_run(page: str):
    """on_change of the run picker: a new run starts at its best held-out checkpoint, else its last."""
    keep("gen_run", page)
    set_setting("gen_epoch", None)


def epoch_names(run_id: str, epochs: list[int]) -> dict:
    """epoch -> its name in the picker: the last and the best held-out one say so."""
    best = RunStore().best_checkpoint(run_id)
    tags = {e: [] for e in epochs}
    tags[epochs[0]].append("the last")
    if best is not None and best["epoch"] in tags:
        tags[best["epoch"]].append(f"the best held-out, {best['val_perplexity']:.2f}")
    return {e: f"epoch {e}" + (f" ({'; '.join(t)})" if t else "") for e, t in tags.items()}


def saved_run(page: str, waiting) -> Chosen:
    """The run and checkpoint pickers; stops the page (after `waiting()`, which says why) when there is nothing."""
    saved = runs_with_checkpoints()
    pinned = st.session_state["gen_run"]
    labels = run_labels(saved)
    if pinned is not None and pinned not in labels:
        st.warning(literal(f"Run {pinned} has no checkpoint here (deleted, or not written yet); pick another."))
        set_setting("gen_run", None)
    if st.session_state["gen_run"] is None:
        chosen = default_run(saved) if saved else None
        if chosen is None:
            waiting()
            st.stop()
        set_setting("gen_run", chosen)  # pinned from now on, and in the link
        set_setting("gen_epoch", None)
    keep_valid("gen_run", page, list(labels))
    widget = {**bound("gen_run", page, resend=True), "on_change": pick_run, "args": (page,)}
    c = st.columns([3, 2])
    run_id = c[0].selectbox("Run", list(labels), format_func=labels.get, **widget)
    kept = checkpoints(run_id)
    epochs = [ck["epoch"] for ck in kept]
    if st.session_state["gen_epoch"] not in epochs:
        best = RunStore().best_checkpoint(run_id)  # a run with held-out figures is used at its best by default
        default = best["epoch"] if best is not None and best["epoch"] in epochs else epochs[0]
        if st.session_state["gen_epoch"] is not None:
            st.warning(f"The run has no checkpoint of epoch {st.session_state['gen_epoch']}; showing epoch {default}.")
        set_setting("gen_epoch", default)
    names = epoch_names(run_id, epochs)
    epoch = c[1].selectbox("Checkpoint", epochs, format_func=names.get, **bound("gen_epoch", page, resend=True))
    try:
        model, vocab, epoch = run_model(run_id, epoch)
    except ValueError as e:  # CheckpointError, or a device that is not there
        error(f"Run: {e}")
        st.stop()
    name = next(r["name"] for r in saved if r["id"] == run_id)
    label = f"run {name} (id {run_id}), checkpoint of {names[epoch]}"
    sha256 = kept[epochs.index(epoch)]["sha256"]
    return Chosen(model, vocab, label, ("run", run_id, epoch, sha256), run_id)


def checkpoint_file(page: str) -> Chosen:
    """The uploader: the uploaded checkpoint (or the one uploaded earlier, on Runs, Generate or Inside)."""
    mb = upload_mb("checkpoint")
    file = st.file_uploader("A charrnn checkpoint (.pt)", type=["pt"], max_upload_size=mb, key="gen_upload")
    if file is not None:
        try:
            load_checkpoint_upload(file)
        except ValueError as e:  # CheckpointError, the demo's upload cap, or a device that is not there
            error(f"Checkpoint file: {e}")
            st.stop()
    cached = st.session_state.get("gen_checkpoint")
    if cached is None:
        st.stop()
    key, model, vocab = cached
    return Chosen(model, vocab, f"checkpoint file {key[1]}", ("file", *key), file=file)


def choose(page: str, waiting) -> Chosen:
    """The Model picker of `page` ("generate", "inside") and the model it names in a caption; stops the page
    when there is none (`waiting()` says why, and what to do)."""
    keep_valid("gen_model", page, GEN_MODELS)  # a setting from an older version of the app
    choice = st.radio("Model", GEN_MODELS, **bound("gen_model", page), horizontal=True)
    chosen = saved_run(page, waiting) if choice == "saved run" else checkpoint_file(page)
    sync(page)  # a run picked by default is in the address from the first run on
    model = views.model_text(chosen.model.config)
    st.caption(literal(f"The model: {model}, a vocab of {len(chosen.vocab)} tokens; {chosen.label}."))
    return chosen
