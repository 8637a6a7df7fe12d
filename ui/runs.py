"""The Runs page's glue: the stored runs and what can be done to one (rename, delete, resume, ...)."""

import re
import sqlite3

import streamlit as st

from charrnn.data import CorpusError
from charrnn.device import resolve_device
from charrnn.runs import demo
from charrnn.runs.runner import run_name
from charrnn.runs.store import DamagedCheckpoint, RunStore, StoreError, home_dir
from charrnn.train import TrainConfig
from ui import auth, views
from ui.corpus import corpus_for_run
from ui.demo import capped, may_change, read_only, require_caps
from ui.display import error, literal
from ui.state import DEFAULTS, HP_FIELDS, set_setting, switch_to
from ui.training import device_choices, device_lock, runner
from ui.visitor import own_runs

RESUMABLE = ("stopped", "interrupted")


def stored_runs() -> list[dict] | None:
    """Every run in the store, newest first; None, and an st.error saying why in one line, when the store cannot
    be opened (its server down, say): the page goes on with what works without it (a checkpoint file).

    Opening the store marks runs whose process died as interrupted."""
    try:
        return RunStore().runs()
    except (ValueError, OSError, sqlite3.Error) as e:
        error(store_problem(e) + " What needs no run store still works: Data, and a checkpoint file here.")
        return None


def store_problem(e: Exception) -> str:
    """One line for a store that cannot be opened: the store's own message (it names the file and
    what to do), or the folder and the fix for anything it did not foresee."""
    if isinstance(e, ValueError):
        return f"Run store: {e}"
    return f"Run store: cannot open it in {home_dir()} ({e}); set CHARRNN_HOME to a writable folder."


def run_labels(runs: list[dict]) -> dict:
    """id -> the run's name; a name that several runs share gets the id added, and the visitor's own
    runs are marked "yours"."""
    names, mine = [r["name"] for r in runs], own_runs()
    labels = {r["id"]: r["name"] if names.count(r["name"]) == 1 else f"{r['name']} ({r['id']})" for r in runs}
    return {i: f"{label} · yours" if i in mine else label for i, label in labels.items()}


def only_mine(runs: list[dict] | None) -> list[dict] | None:
    """The runs the page lists: all of them, or, with "Only mine" on, the visitor's own (offered where runs have
    owners: with sign-in on, or in demo mode)."""
    if not runs or not (demo.demo_enabled() or auth.configured()):
        return runs
    if not st.toggle("Only mine", key="runs_only_mine", help="only the runs you started"):
        return runs
    return mine_of(runs)


def no_runs_text() -> str:
    if st.session_state.get("runs_only_mine"):
        return "None of the runs is yours yet: start one on the Train page, or turn Only mine off to see all."
    return "No runs yet: start one on the Train page, or with `python -m charrnn train`."


def mine_of(runs: list[dict]) -> list[dict]:
    mine = own_runs()
    return [r for r in runs if r["id"] in mine]


def runs_table(runs: list[dict]):
    """The table of every run listed, redrawn every 3 s while one of them trains (no Refresh to press, and the page
    does not move), and the whole page once when one of them ends (its buttons and pickers follow)."""
    training = {r["id"] for r in runs if r["status"] == "running"}
    filtered = bool(st.session_state.get("runs_only_mine"))

    @st.fragment(run_every=3.0 if training else None)
    def view():
        try:
            now = (mine_of(RunStore().runs()) if filtered else RunStore().runs()) if training else runs
        except StoreError as e:  # the database away (a server restarting): the last table stays, and says why
            st.warning(literal(f"The run store cannot be read just now; trying again every 3 s. ({e})"))
            now = runs
        if {r["id"] for r in now if r["status"] == "running"} != training:
            st.rerun()  # a run ended or started: the rest of the page follows
        table = views.runs_table(now, own_runs())
        st.dataframe(table, hide_index=True, column_config=views.RUNS_COLUMNS, placeholder="", key="runs_table")

    view()


def checkpoint_download(run: dict) -> tuple[bytes, str, str] | None:
    """(bytes, file name, caption) of a run's last checkpoint, or None when it has none."""
    store = RunStore()
    last = store.last_checkpoint(run["id"])
    if last is None:
        return None
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", run["name"]).strip("-") or run["id"]
    try:
        data = store.checkpoint_bytes(run["id"], last["epoch"])
    except DamagedCheckpoint as e:  # its bytes changed in the database: said, and not offered
        error(f"Download checkpoint: {e}")
        return None
    return data, f"{name}-epoch{last['epoch']}.pt", f"last checkpoint: epoch {last['epoch']}, {len(data) / 1e6:.1f} MB"


def refused(run_id: str, action: str) -> bool:
    """In demo mode, a run of another session cannot be changed: say so as the page's error. The
    buttons are off for it too, but a disabled button can be bypassed; this callback check cannot."""
    if may_change(run_id):
        return False
    st.session_state["runs_error"] = f"{action}: {read_only()}"
    return True


def rename_run(run_id: str):
    """on_click of Rename: the new name is in the run's text input."""
    st.session_state.pop("runs_error", None)
    if refused(run_id, "Rename"):
        return
    try:
        RunStore().rename(run_id, run_name(st.session_state.get(f"runs_name_{run_id}", "")))
    except ValueError as e:
        st.session_state["runs_error"] = f"New name: {e}"


def stop_run(run_id: str):
    """on_click of Stop on the Runs page: asks, through the run store, whichever process trains the run (this
    server's, another's, a CLI's) to stop it at its next minibatch boundary."""
    st.session_state.pop("runs_error", None)
    if refused(run_id, "Stop"):
        return
    try:
        RunStore().ask_stop(run_id)
    except ValueError as e:  # it ended meanwhile
        st.session_state["runs_error"] = f"Stop: {e}"


def ask_delete(run_id: str | None):
    """on_click of Delete (asks to confirm) and of Cancel (None)."""
    st.session_state.pop("runs_error", None)
    if run_id is not None and refused(run_id, "Delete"):
        run_id = None
    st.session_state["runs_confirm_delete"] = run_id


def delete_run(run_id: str):
    """on_click of the confirmation: the run, its curve and its checkpoint files go."""
    st.session_state.pop("runs_confirm_delete", None)
    st.session_state.pop("runs_error", None)
    if refused(run_id, "Delete"):
        return
    try:
        if RunStore().run(run_id)["status"] == "running":
            st.session_state["runs_error"] = "Delete: the run is still training; stop it on the Train page first."
            return
        RunStore().delete(run_id)  # refuses a run that started meanwhile (ValueError)
    except ValueError as e:
        st.session_state["runs_error"] = f"Delete: {e}"
        return
    set_setting("runs_selected", [i for i in st.session_state["runs_selected"] if i != run_id])


def resume_run(run_id: str):
    """on_click of Resume: continue the run from its last checkpoint on this session's runner, then show Train."""
    st.session_state.pop("runs_error", None)
    if refused(run_id, "Resume"):
        return
    try:
        run = RunStore().run(run_id)
        corpus = corpus_for_run(run)
        config = TrainConfig.from_dict({**run["config"], "device": st.session_state["hp_device"]}).validate()
        require_caps(config, len(corpus), len(corpus.vocab))
        device = str(resolve_device(config.device))
        every = st.session_state["checkpoint_every"]
        if runner().start(corpus, config, device_lock(device), resume=run_id, checkpoint_every=every, queue=True):
            st.session_state["train_settings"] = False  # the Train page shows the run, its settings folded
    except (ValueError, CorpusError) as e:
        st.session_state["runs_error"] = f"Resume: {e}"
        return
    switch_to("pages/train.py")


def train_again(run_id: str):
    """on_click of "Train again with these settings": the run's config into the Train form, then show Train.

    Every value is taken as it was; one that this machine cannot take (a device it lacks) is named."""
    st.session_state.pop("runs_error", None)
    run = RunStore().run(run_id)
    try:  # a value no form field can hold (a store written by hand) is named, not copied into the form
        config = TrainConfig.from_dict(run["config"]).validate()
    except ValueError as e:
        st.session_state["runs_error"] = f"Train again: {e}"
        return
    if capped():  # settings above a cap are refused here, not copied into a form that refuses them
        try:
            require_caps(config, len(corpus_for_run(run)) if config.max_tokens == 0 else None)
        except (ValueError, CorpusError) as e:
            st.session_state["runs_error"] = f"Train again: {e}"
            return
    notes = []
    for name in HP_FIELDS:
        value = getattr(config, name)
        if name == "device" and value not in device_choices():
            notes.append(f"device {value!r} is not on this machine; kept {st.session_state['hp_device']!r}")
            continue
        set_setting(f"hp_{name}", type(DEFAULTS[f"hp_{name}"])(value))
    if run["corpus"].get("source") in ("time_machine", "fallback"):
        set_setting("corpus_source", run["corpus"]["source"])
    if run["corpus"].get("mode") in ("book", "raw"):
        set_setting("corpus_mode", run["corpus"]["mode"])
    if notes:
        st.session_state["train_notice"] = f"Settings of {run['name']}: " + "; ".join(notes) + "."
    switch_to("pages/train.py")


def generate_from(choice: str, run_id: str | None = None):
    """on_click: open Generate on a saved run, or on the checkpoint file uploaded on the Runs page."""
    set_setting("gen_model", choice)
    if run_id is not None:
        set_setting("gen_run", run_id)
        set_setting("gen_epoch", None)  # its best held-out checkpoint, else its last, pinned as the page opens
    switch_to("pages/generate.py")
