"""The run store's database from the app's secrets: ``[connections.charrnn]`` in ``.streamlit/secrets.toml`` (a
``url``, or Streamlit's SQL connection fields: dialect, host, port, username, password, database), read through
``st.connection`` as Streamlit's own recipe for a database does.

Without it the app uses CHARRNN_DATABASE_URL if set, else the SQLite file in CHARRNN_HOME, as the CLI does."""

import os

import streamlit as st

from charrnn.runs.database import ENV, StoreError
from charrnn.runs.store import RunStore


def use_secrets() -> None:
    """Point every run store this server opens, and its training processes, at ``[connections.charrnn]``."""
    if os.environ.get(ENV) or not configured():
        return
    # The section's fields given as arguments too: st.connection reads the secrets file itself, which a test's
    # (AppTest's) secrets never reach; the arguments are what the section holds either way.
    connection = st.connection("charrnn", type="sql", **dict(st.secrets["connections"]["charrnn"]))
    os.environ[ENV] = connection.engine.url.render_as_string(hide_password=False)


def configured() -> bool:
    """Whether the secrets name a charrnn database (no secrets file at all: no)."""
    try:
        return "charrnn" in st.secrets.get("connections", {})
    except FileNotFoundError:  # Streamlit's StreamlitSecretNotFoundError: no secrets.toml anywhere
        return False


@st.cache_data(ttl=5, show_spinner=False)
def problem(url: str) -> str | None:
    """Why the run store (at `url`, the process's CHARRNN_DATABASE_URL: part of the cache key) cannot be opened,
    in one line; None when it can. Asked at most every 5 s per server: a server that does not answer costs its
    connect timeout once, not on every page."""
    try:
        RunStore()
    except StoreError as e:
        return str(e)
    return None


def say_if_down() -> None:
    """Every page's sidebar says in one line when the run store cannot be used (the pages that need it say why
    on the page too; the others, Data and a checkpoint file, work without it)."""
    found = problem(os.environ.get(ENV, ""))
    if found:
        st.sidebar.error(f"Run store unavailable: {found}", icon=":material/cloud_off:")
