"""Runs training elsewhere (another tab's, another app server's, the CLI's, on any machine that shares the run
store), watched live and read-only."""

import socket
import sqlite3

import streamlit as st

from charrnn.runs.store import RunStore, StoreError, home_dir
from charrnn.train import EpochStats, TrainConfig
from ui.corpus import yardstick_of
from ui.display import error, literal, show_run
from ui.runs import store_problem
from ui.state import bound, keep_valid, set_setting
from ui.training import runner


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
    here = (own_pid, socket.gethostname())
    return [r for r in store.runs(status="running") if r["id"] != own_id and (r["pid"], r["host"]) != here]


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
        except StoreError as e:  # the database away (a server restarting): said, and looked at again in a second
            st.warning(literal(f"The run store cannot be read just now; trying again. ({e})"))
            return
        except ValueError:  # deleted meanwhile
            st.info("That run is no longer in the store.")
            return
        if live and run["status"] != "running":
            st.rerun()  # it ended: one full rerun stops the polling
        st.caption(literal(f"Watching {run['name']} (run {run_id}, on {run['device']}); read-only."))
        config = TrainConfig.from_dict(run["config"])
        show_run(history, config, run["status"], f"{key}_watch_ppl", counting=yardstick_of(run["corpus"], config))

    view()


def elsewhere(page: str):
    """Runs training elsewhere on this machine (the device lock made visible), and a read-only live
    view of the one picked; shows nothing when there is none."""
    try:
        running = running_elsewhere()
    except (ValueError, OSError, sqlite3.Error) as e:  # the Runs page says the same; the page goes on
        error(store_problem(e))
        return
    labels = {r["id"]: f"{r['name']} (run {r['id']}, on {r['device']}, training)" for r in running}
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
        st.subheader("Training elsewhere")
        st.caption(
            "Started by another browser session, another app server or `python -m charrnn train`, on this machine "
            "or any other that shares the run store. Anyone can watch it here; Stop is on the Runs page."
        )
        st.selectbox(
            "Watch live (read-only)",
            options,
            format_func=lambda i: "(nothing)" if i is None else labels[i],
            **bound("watch_run", page),
        )
        if st.session_state["watch_run"] is not None:
            watch(st.session_state["watch_run"], page)
