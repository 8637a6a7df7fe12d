"""Book: the chapter's three runs (D2L 8.5 and 8.6), queued with one button, beside the book's figures."""

import streamlit as st

import ui
import ui.book
from charrnn.reproduce import EXPERIMENTS
from charrnn.store import RunStore

ui.via_entry(__file__)

st.title("Book")
st.write(
    "The chapter trains three models on the first 10,000 characters of The Time Machine: the scratch RNN "
    "with its state carried across minibatches, the same with the state reset before every minibatch, and "
    "the concise `nn.RNN` of section 8.6 with 256 hidden units. Each is recorded as a run. Beside the book's "
    "perplexity you see what it never showed: the perplexity on the 2,000 characters that follow the "
    "training text. `python -m charrnn reproduce` runs the same from a terminal."
)
queue = ui.book.book_queue()
running = queue.running()
c = st.columns([1, 1, 3], vertical_alignment="bottom")
st.session_state.setdefault("book_epochs", 500)
c[0].number_input("epochs per run", min_value=1, key="book_epochs", help="500 is the book's.", disabled=running)
c[1].button("Run the three", on_click=ui.book.start_book, type="primary", disabled=running, key="book_start")
c[2].button("Stop", on_click=queue.stop, disabled=not running, key="book_stop")
if st.session_state.get("book_error"):
    ui.error(st.session_state["book_error"])
if queue.message:
    ui.error(queue.message)


@st.fragment(run_every=2.0 if running else None)
def results():
    if running and not queue.running():
        st.rerun()  # the queue ended: one full rerun stops the polling and re-enables the button
    with queue.lock:
        run_ids = dict(queue.run_ids)
    if not run_ids:
        st.info("No run yet: press the button (about 3 minutes per run on 2 CPU cores, seconds on a GPU).")
        return
    st.dataframe(ui.book.book_table(run_ids), hide_index=True, key="book_table")
    store = RunStore()
    runs = [store.run(run_ids[e.name]) for e in EXPERIMENTS if e.name in run_ids]
    labels = {r["id"]: r["name"] for r in runs}
    metric = st.radio(
        "Curves", list(ui.views.METRICS), format_func=ui.views.METRICS.get, horizontal=True, key="book_metric"
    )
    st.plotly_chart(ui.views.runs_figure(runs, labels, metric), key="book_curves", config={"displaylogo": False})


results()
