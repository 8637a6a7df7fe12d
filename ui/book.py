"""The Book page's queue: the chapter's three runs (charrnn.reproduce), one after another on this
session's runner, and their table against the book's figures, read back from the run store."""

import threading
import time

import pandas as pd
import streamlit as st

from charrnn import demo
from charrnn.data import CorpusError
from charrnn.device import resolve_device
from charrnn.reproduce import EXPERIMENTS
from charrnn.runner import Runner
from charrnn.store import RunStore
from charrnn.train import TrainConfig
from ui.corpus import load_text
from ui.training import device_lock, runner


class BookQueue:
    """Starts each experiment when the one before it finished; stops at the first that did not finish.

    Plain Python (a thread and a lock): the session's Runner trains, this only chains its runs."""

    def __init__(self):
        self.lock = threading.Lock()
        self.run_ids: dict[str, str] = {}  # experiment name -> run id, as they start
        self.message = ""
        self.thread: threading.Thread | None = None
        self.runner: Runner | None = None
        self.stop_asked = False

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self, run: Runner, lock, configs: list[tuple[str, TrainConfig]], corpus, every: int):
        """Chain `configs` ((name, config), one device) on the session's `run`ner, holding `lock` per run."""
        with self.lock:
            self.run_ids, self.message, self.stop_asked = {}, "", False
            self.runner = run
        args = (run, lock, configs, corpus, every)
        self.thread = threading.Thread(target=self._work, args=args, daemon=True, name="book")
        self.thread.start()

    def stop(self):
        self.stop_asked = True
        if self.runner is not None:
            self.runner.stop()

    def _work(self, run, lock, configs, corpus, every):
        # No st.* here: this thread has no script context (the runner and lock come from the callback).
        for name, config in configs:
            if self.stop_asked:
                return
            if not run.start(corpus, config, lock, checkpoint_every=every, name=f"book: {name}", queue=True):
                self.message = run.snapshot().message or "This session is already training; stop it first."
                return
            while run.running():
                snap = run.snapshot()
                if snap.run_id:
                    with self.lock:
                        self.run_ids[name] = snap.run_id
                time.sleep(0.3)
            run.join()
            snap = run.snapshot()
            with self.lock:
                if snap.run_id:
                    self.run_ids[name] = snap.run_id
            if snap.status != "finished":
                self.message = f"{name}: {snap.status}. {snap.message}".strip()
                return


@st.cache_resource(scope="session", on_release=lambda q: q.stop(), show_spinner=False)
def book_queue() -> BookQueue:
    return BookQueue()


def start_book():
    """on_click of the Book page's button: queue the three runs with the page's device and epochs."""
    st.session_state.pop("book_error", None)
    try:
        corpus = load_text("time_machine", "book", 10000, None)
        base = {"device": st.session_state["hp_device"], "num_epochs": st.session_state["book_epochs"]}
        configs = [(e.name, TrainConfig(**{**e.overrides, **base}).validate()) for e in EXPERIMENTS]
        for _, config in configs:  # the chapter's runs are within the demo's caps; the epochs field may not be
            demo.require_caps(config, len(corpus))
    except (ValueError, CorpusError) as e:
        st.session_state["book_error"] = str(e)
        return
    lock = device_lock(str(resolve_device(st.session_state["hp_device"])))
    book_queue().start(runner(), lock, configs, corpus, every=st.session_state["checkpoint_every"])


def book_table(run_ids: dict) -> pd.DataFrame:
    """One row per experiment: the book's figure and continuation beside ours, from the run store."""
    store, rows = RunStore(), []
    for e in EXPERIMENTS:
        run_id = run_ids.get(e.name)
        history = store.history(run_id) if run_id else []
        vals = [h["val_perplexity"] for h in history if h.get("val_perplexity") is not None]
        samples = [h["sample"] for h in history if h["sample"]]
        last = history[-1] if history else {}
        rows.append(
            {
                "run": e.name,
                "status": store.run(run_id)["status"] if run_id else "queued",
                "epochs": len(history),
                "book perplexity": e.book_perplexity,
                "training perplexity": last.get("perplexity"),
                "held-out (final)": vals[-1] if vals else None,
                "held-out (best)": min(vals) if vals else None,
                "tokens/s": last.get("tokens_per_sec"),
                "seconds": last.get("elapsed"),
                "device": store.run(run_id)["device"] if run_id else "",
                "ours: time traveller ...": samples[-1] if samples else "",
                "the book's": e.book_continuation,
            }
        )
    return pd.DataFrame(rows)
