"""The models Generate can use: a saved run's last checkpoint, or an uploaded checkpoint file."""

from pathlib import Path

import streamlit as st

from charrnn.checkpoint import load_checkpoint
from charrnn.device import resolve_device
from charrnn.store import RunStore, StoreError
from ui.demo import check_upload, upload_mb
from ui.display import error
from ui.runs import run_labels, stored_runs
from ui.state import bound, keep_valid

GEN_MODELS = ["trained in this session", "saved run", "checkpoint file"]


def load_checkpoint_upload(file):
    """(model, vocab) from an uploaded checkpoint, kept per session and file; raises CheckpointError, or
    ValueError for a file above the demo's upload cap.

    The upload is read where Streamlit holds it, in memory: nothing of it is written to the run store or
    to disk (Generate and Inside use it from session state)."""
    check_upload(file)
    key = (file.file_id, file.name)
    cached = st.session_state.get("gen_checkpoint")
    if cached is None or cached[0] != key:
        model, vocab, _ = load_checkpoint(file, device=resolve_device(st.session_state["hp_device"]))
        cached = st.session_state["gen_checkpoint"] = (key, model, vocab)
    return cached[1], cached[2]


def runs_with_checkpoints() -> list[dict]:
    store = RunStore()
    return [r for r in stored_runs() if store.last_checkpoint(r["id"]) is not None]


def newest_finished_run() -> dict | None:
    """The newest finished run of the store that has a checkpoint: what a visitor with no model of
    their own (a fresh session, a reload, a shared link) can generate from at once. None, and the
    reason on the page, when the run store cannot be used."""
    try:
        store = RunStore()
    except StoreError as e:
        error(f"The run store cannot be used. {e}")
        return None
    return next((r for r in store.runs(status="finished") if store.last_checkpoint(r["id"]) is not None), None)


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
    file = st.file_uploader("A charrnn checkpoint (.pt)", type=["pt"], max_upload_size=upload_mb(), key="gen_upload")
    if file is None:
        cached = st.session_state.get("gen_checkpoint")
        if cached is None:
            st.stop()
        st.caption("Using the checkpoint uploaded earlier:")
        st.text(cached[0][1])
        return cached[1], cached[2]
    try:
        return load_checkpoint_upload(file)
    except ValueError as e:  # CheckpointError, the demo's upload cap, or a device that is not there
        error(f"Checkpoint file: {e}")
        st.stop()
