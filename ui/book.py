"""The Book page's queues: the book's runs of a chapter (charrnn.book: chapter 8's three, 9's five),
one after another on this session's runner, their table against the book's figures, read back from
the run store, and the section of the page that shows them."""

import math
import threading
import time

import pandas as pd
import streamlit as st

from charrnn.book import CHAPTERS, within
from charrnn.data import CorpusError
from charrnn.device import resolve_device
from charrnn.runs.runner import Runner
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig
from ui import views
from ui.corpus import load_text, yardsticks_for
from ui.demo import require_caps
from ui.display import error
from ui.training import device_lock, runner
from ui.visitor import visitor_key


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
        """Stop the chain, and the run of it that trains now: never a run the visitor started elsewhere."""
        self.stop_asked = True
        if self.runner is not None and self.running():
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


# Widget keys of each chapter's section start with this (chapter 8's predate chapter 9).
KEYS = {8: "book", 9: "book9"}
# Per run on 2 CPU cores; chapter 9's from 10 epochs of each at low load (0.9-2.4 s), times 50.
MINUTES = {8: "about 3 minutes", 9: "1 to 3 minutes"}


@st.cache_resource(max_entries=1000, show_spinner=False)
def _book_queue(visitor: str, chapter: int) -> BookQueue:
    return BookQueue()


def book_queue(chapter: int) -> BookQueue:
    """The visitor's queue of `chapter`'s runs (one per chapter; both train on the visitor's runner): every
    tab of theirs sees it, and a closed tab leaves it going, as their own runs go on."""
    return _book_queue(visitor_key(), chapter)


def any_running() -> bool:
    """Whether a chapter's queue is training: the session's runner trains one run at a time."""
    return any(book_queue(chapter).running() for chapter in CHAPTERS)


def start_book(chapter: int):
    """on_click of a chapter's button: queue its runs with the page's device and epochs."""
    key = KEYS[chapter]
    st.session_state.pop(f"{key}_error", None)
    try:
        corpus = load_text("time_machine", "book", 10000, None)
        base = {"device": st.session_state["hp_device"], "num_epochs": st.session_state[f"{key}_epochs"]}
        configs = [(e.name, TrainConfig(**{**e.overrides, **base}).validate()) for e in CHAPTERS[chapter]]
        for _, config in configs:  # the chapter's runs are within the demo's caps; the epochs field may not be
            require_caps(config, len(corpus))
    except (ValueError, CorpusError) as e:
        st.session_state[f"{key}_error"] = str(e)
        return
    lock = device_lock(str(resolve_device(st.session_state["hp_device"])))
    book_queue(chapter).start(runner(), lock, configs, corpus, every=st.session_state["checkpoint_every"])


def book_table(chapter: int, run_ids: dict) -> pd.DataFrame:
    """One row per run of `chapter`: the book's figure and continuation beside ours, from the run store."""
    store, rows = RunStore(), []
    for e in CHAPTERS[chapter]:
        run_id = run_ids.get(e.name)
        run = store.run(run_id) if run_id else {"status": "queued", "device": ""}
        history = store.history(run_id) if run_id else []
        vals = [h["val_perplexity"] for h in history if h.get("val_perplexity") is not None]
        samples = [h["sample"] for h in history if h["sample"]]
        last = history[-1] if history else {}
        row = {"run": e.name, "status": run["status"], "epochs": len(history), "book perplexity": e.book_perplexity}
        row["training perplexity"] = last.get("perplexity")
        if e.tolerance is not None:  # judged once the run has finished, as the CLI's table judges it
            ppl = last.get("perplexity") or math.inf  # a diverged epoch is stored without a figure
            ok = within(ppl, e.book_perplexity, e.tolerance) if run["status"] == "finished" else None
            row[f"within {e.tolerance:g}"] = {None: "", True: "yes", False: "no"}[ok]
        row |= {
            "held-out (final)": vals[-1] if vals else None,
            "held-out (best)": min(vals) if vals else None,
            "tokens/s": last.get("tokens_per_sec"),
            "seconds": last.get("elapsed"),
            "device": run["device"],
            "ours: time traveller ...": samples[-1] if samples else "",
        }
        if e.book_continuation:  # BOOK.md gives chapter 8's, not chapter 9's
            row["the book's"] = e.book_continuation
        rows.append(row)
    return pd.DataFrame(rows)


def section(chapter: int, button: str):
    """A chapter's controls (epochs, the button that queues its runs, Stop), then its table and curves."""
    key, queue = KEYS[chapter], book_queue(chapter)
    running, busy = queue.running(), any_running()
    c = st.columns([1, 1, 3], vertical_alignment="bottom")
    st.session_state.setdefault(f"{key}_epochs", 500)
    c[0].number_input("epochs per run", min_value=1, key=f"{key}_epochs", help="500 is the book's.", disabled=busy)
    c[1].button(button, on_click=start_book, args=(chapter,), type="primary", disabled=busy, key=f"{key}_start")
    c[2].button("Stop", on_click=queue.stop, disabled=not running, key=f"{key}_stop")
    if st.session_state.get(f"{key}_error"):
        error(st.session_state[f"{key}_error"])
    if queue.message:
        error(queue.message)
    st.fragment(_results, run_every=2.0 if running else None)(chapter, running)


def _results(chapter: int, was_running: bool):
    """The live part of a section: polls while its queue trains."""
    key, queue = KEYS[chapter], book_queue(chapter)
    if was_running and not queue.running():
        st.rerun()  # the queue ended: one full rerun stops the polling and re-enables the buttons
    with queue.lock:
        run_ids = dict(queue.run_ids)
    if not run_ids:
        st.info(f"No run yet: press the button ({MINUTES[chapter]} per run on 2 CPU cores, seconds on a GPU).")
        return
    table = book_table(chapter, run_ids)
    st.dataframe(table, hide_index=True, key=f"{key}_table")
    for column in (c for c in table.columns if c.startswith("within ")):  # chapter 9's acceptance
        judged = table[column][table[column] != ""]
        st.caption(f"{(judged == 'yes').sum()} of {len(judged)} finished runs {column} of the book's perplexity.")
    store = RunStore()
    runs = [store.run(run_ids[e.name]) for e in CHAPTERS[chapter] if e.name in run_ids]
    labels = {r["id"]: r["name"] for r in runs}
    metric = st.radio(
        "Curves", list(views.METRICS), format_func=views.METRICS.get, horizontal=True, key=f"{key}_metric"
    )
    st.plotly_chart(
        views.runs_figure(runs, labels, metric, yardsticks_for(runs)),
        key=f"{key}_curves",
        config={"displaylogo": False},
    )
