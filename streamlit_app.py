"""charrnn studio: the entry file. `streamlit run streamlit_app.py`.

It declares the pages with `st.navigation` (the only navigation mechanism), keeps the settings in
session state, draws the sidebar every page shares, and holds the Home page.
"""

# Imported here, before any page or fragment: a first lazy import inside a fragment once failed
# with "partially initialized module 'pandas'".
import pandas  # noqa: F401
import plotly.graph_objects  # noqa: F401
import streamlit as st

import ui
import ui.database
from charrnn.runs.store import StoreError


def home():
    st.title("charrnn studio")
    st.write(
        "This studio trains the character-level recurrent neural network of Dive into Deep Learning, "
        "section 8.5, written from scratch in PyTorch, on H. G. Wells' The Time Machine or on a text you give it. "
        "You can look at how the text becomes a vocabulary and minibatches, watch the training perplexity fall "
        "while the model learns, and then let it continue a prefix one character at a time. "
        "The defaults are the book's recipe: 512 hidden units, 35 time steps, batches of 32, learning rate 1, "
        "the first 10,000 characters, 500 epochs."
    )
    st.subheader("Device")
    st.text(ui.device_text(st.session_state["hp_device"]))
    st.subheader("Corpus")
    kind, text = ui.corpus_status()
    {"ok": st.success, "missing": st.warning, "error": st.error}[kind](ui.literal(text))
    if kind == "missing":
        st.button("Download The Time Machine now", on_click=ui.download_time_machine, key="home_download")
    st.subheader("Pages")
    st.page_link(DATA, label="Data: the text, its vocabulary and the minibatches", icon=":material/dataset:")
    st.page_link(TRAIN, label="Train: live perplexity, tokens/s and samples", icon=":material/monitoring:")
    st.page_link(
        GENERATE, label="Generate: continue a prefix, see the next-char probabilities", icon=":material/edit_note:"
    )
    st.page_link(RUNS, label="Runs: every run kept, compared, resumed or trained again", icon=":material/table_chart:")
    st.page_link(BOOK, label="Book: chapters 8 and 9 beside their published figures", icon=":material/menu_book:")
    st.page_link(
        INSIDE, label="Inside: the hidden units over a text, gradients through time", icon=":material/neurology:"
    )
    st.page_link(TUNE, label="Tune: a hyperparameter search, trial by trial, on Optuna", icon=":material/science:")


st.set_page_config(page_title="charrnn studio", page_icon=":material/text_fields:", layout="wide")
HOME = st.Page(home, title="Home", icon=":material/home:", default=True)
DATA = st.Page("pages/data.py", title="Data", icon=":material/dataset:")
TRAIN = st.Page("pages/train.py", title="Train", icon=":material/monitoring:")
GENERATE = st.Page("pages/generate.py", title="Generate", icon=":material/edit_note:")
RUNS = st.Page("pages/runs.py", title="Runs", icon=":material/table_chart:")
BOOK = st.Page("pages/book.py", title="Book", icon=":material/menu_book:")
INSIDE = st.Page("pages/inside.py", title="Inside", icon=":material/neurology:")
TUNE = st.Page("pages/tune.py", title="Tune", icon=":material/science:")
# The sidebar menu is ours (ui.sidebar): the built-in one is off in .streamlit/config.toml, because
# a fresh server first shows the auto-discovered pages/ folder there before this call takes over.
PAGES = [HOME, DATA, TRAIN, GENERATE, RUNS, BOOK, INSIDE, TUNE]
page = st.navigation(PAGES, position="hidden")
ui.init_state()
ui.entry_done()
try:
    ui.database.use_secrets()  # [connections.charrnn]: the run store on a database server
    ui.sidebar(PAGES)
    ui.database.say_if_down()
    page.run()
except StoreError as e:  # the run store's file or folder cannot be used: every page says so, nothing is changed
    st.error(f"The run store cannot be used. {e}", icon=":material/error:")
