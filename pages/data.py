"""Data: the text, its vocabulary, and how it is cut into minibatches (D2L 8.2-8.3)."""

import pandas as pd
import streamlit as st

import ui
import ui.demo
import ui.links
from charrnn import batches
from charrnn.data import MAX_TEXT_BYTES

ui.via_entry(__file__)
ui.links.restore_and_sync("data")  # a shared link's settings, and the address kept in step

st.title("Data")
ui.links.link_to_this_view("data")
c1, c2, c3 = st.columns(3)
c1.selectbox("Corpus source", list(ui.SOURCES), format_func=ui.SOURCES.get, **ui.bound("corpus_source", "data"))
c2.radio(
    "Preprocessing mode",
    ["book", "raw"],
    **ui.bound("corpus_mode", "data"),
    horizontal=True,
    help="book: letters only, lowercased, lines joined with no separator (as D2L). raw: every character.",
)
c3.number_input("max_tokens (0 = the whole text)", min_value=0, step=1000, **ui.bound("hp_max_tokens", "data"))
if st.session_state["corpus_source"] == "upload":
    limit = ui.demo.upload_mb() or MAX_TEXT_BYTES // 2**20  # the demo's cap, else the core's
    file = st.file_uploader(
        "A UTF-8 .txt file",
        type=["txt"],
        max_upload_size=ui.demo.upload_mb(),
        key="data_upload",
        help=f"Up to {limit} MiB of text; any language, any characters (raw mode keeps them all).",
    )
    if file is not None:
        try:
            ui.demo.check_upload(file)  # the browser's own check of the cap can be bypassed
        except ValueError as e:
            ui.error(str(e))
            st.stop()
        st.session_state["upload"] = {"name": file.name, "data": file.getvalue()}
    if st.session_state.get("upload"):
        st.caption("Using the uploaded file:")
        st.text(st.session_state["upload"]["name"])
corpus = ui.current_corpus()
if corpus is None:
    if st.session_state.get("tm_error"):
        st.button("Retry the download", on_click=ui.download_time_machine, key="data_retry")
    st.stop()

vocab = corpus.vocab
st.text(f"{corpus.name}: {corpus.num_lines:,} lines, {corpus.mode} preprocessing, SHA-1 {corpus.sha1[:12]}")
m = st.columns(3)
m[0].metric("Characters after preprocessing", f"{len(corpus.text):,}")
m[1].metric("Tokens used for training", f"{len(corpus):,}")
m[2].metric("Vocab size", len(vocab))
st.caption("The first 300 characters as the model sees them:")
st.text(corpus.text[:300])

st.header("Vocabulary")
rows = [(i, ui.views.token_label(t), n) for i, t, n in vocab.frequencies()]
freq = pd.DataFrame(rows, columns=["index", "token", "count"])
left, right = st.columns([1, 2])
left.dataframe(freq, hide_index=True, height=360)
bars = ui.views.bar_figure(list(freq["token"]), list(freq["count"]), "token (by index)", "count in the whole text", 360)
right.plotly_chart(bars, key="vocab_bars")

st.header("Minibatches")
c = st.columns(5)
c[0].radio("sampling", ["sequential", "random"], **ui.bound("hp_sampling", "data"))
c[1].number_input("batch_size", min_value=1, **ui.bound("hp_batch_size", "data"))
c[2].number_input("num_steps", min_value=1, **ui.bound("hp_num_steps", "data"))
c[3].number_input("seed", step=1, **ui.bound("hp_seed", "data"))
b, t, sampling, seed = (st.session_state[k] for k in ("hp_batch_size", "hp_num_steps", "hp_sampling", "hp_seed"))
try:
    count = ui.num_minibatches(corpus.corpus, b, t, sampling, seed)
except ValueError as e:
    ui.error(f"Minibatches: {e}")
    st.stop()
# A cleared field is None: back to the first minibatch (a link never carries None).
st.session_state["data_batch_no"] = min(st.session_state.get("data_batch_no") or 1, count)
k = c[4].number_input(f"minibatch (1 to {count})", min_value=1, max_value=count, key="data_batch_no")
X, Y = ui.nth_minibatch(corpus.corpus, b, t, sampling, seed, k)
V, H = len(vocab), st.session_state["hp_num_hiddens"]
shapes = pd.DataFrame(
    [
        ("X (inputs)", str((b, t)), "(batch_size, num_steps) token indices"),
        ("one-hot X.T", str((t, b, V)), "(num_steps, batch_size, vocab_size): the loop runs over time steps"),
        ("outputs", str((t * b, V)), "(num_steps x batch_size, vocab_size): all steps concatenated, time-major"),
        ("state H", str((b, H)), "(batch_size, num_hiddens), num_hiddens from the Train form"),
    ],
    columns=["tensor", "shape", "meaning"],
)
st.table(shapes.set_index("tensor"))
rows = min(b, 8)
st.caption(
    f"Rows 1 to {rows} of minibatch {k} of {count} as characters (· is a space, ⏎ a newline). "
    "Y is X shifted left by one: every target is the next character."
)
show = ui.views.visible_chars
st.code(
    "\n".join(
        f"row {i + 1:>3} X  {show(vocab.decode(X[i]))}\n        Y  {show(vocab.decode(Y[i]))}" for i in range(rows)
    ),
    language=None,
)

st.header("Sequential partitioning against random sampling")
# 20,000 tokens draw well; large minibatches need more for one minibatch of each sampling.
n = min(len(corpus), max(20_000, b * (t + 1) + 2 * t + 1))
try:
    st.plotly_chart(ui.views.layout_figure(n, b, t, seed), key="layout")
except ValueError as e:  # the text holds a sequential minibatch but not a random one
    ui.error(f"The picture of both samplings: {e}")
st.caption(
    f"The first {n:,} tokens wrapped into {b} rows; colour = the minibatch that reads each token in one epoch "
    "(blank = dropped). Sequential minibatches are vertical bands: minibatch k+1 continues every row of k, "
    "so the hidden state can be carried over. Random sampling scatters its windows."
)
with st.expander("The picture in the code (charrnn.batches)"):
    st.code(batches.__doc__, language=None)
