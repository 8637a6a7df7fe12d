"""Shared fixtures. On a developer machine a missing text or browser skips its tests and says why; in
CI (the `CI` environment variable set) it FAILS them, and the text is never downloaded there."""

import os

import pg
import pytest
from support import in_ci, missing

from charrnn.data import CorpusError, download_time_machine, find_time_machine, load_corpus
from charrnn.runs.store import RunStore

DOWNLOAD_TIMEOUT = 10  # seconds: an offline machine must not hold the test session up for long


@pytest.fixture(autouse=True, scope="session")
def _private_home(tmp_path_factory):
    """Runs and checkpoints written by tests go to a temporary home, never the user's."""
    home = tmp_path_factory.mktemp("charrnn-home")
    old = os.environ.get("CHARRNN_HOME")
    os.environ["CHARRNN_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("CHARRNN_HOME", None)
    else:
        os.environ["CHARRNN_HOME"] = old


@pytest.fixture(scope="session")
def time_machine_path():
    """Path of the verified Time Machine text: CHARRNN_DATA_DIR or the cache, else (outside CI only)
    downloaded once per session by the core's own download, which checks the SHA-1 and caches it."""
    try:
        path = find_time_machine()
    except CorpusError as e:  # a wrong file in CHARRNN_DATA_DIR: someone must replace it
        pytest.fail(str(e))
    if path is not None:
        return path
    if in_ci():
        pytest.fail(
            "The Time Machine is missing: CI never downloads it; set CHARRNN_DATA_DIR to a folder holding "
            "timemachine.txt (.ci/run uses ../shared/data)."
        )
    try:
        return download_time_machine(timeout=DOWNLOAD_TIMEOUT)
    except CorpusError as e:  # offline (or a corrupted download, which caches nothing)
        pytest.skip(f"The Time Machine is not on this machine and the download failed: {e}")


@pytest.fixture(scope="session")
def full_corpus(time_machine_path):
    """The whole book, book preprocessing."""
    return load_corpus("time_machine", mode="book", max_tokens=None, download=False)


@pytest.fixture(scope="session")
def recipe_corpus(time_machine_path):
    """The chapter's training text: the first 10,000 chars."""
    return load_corpus("time_machine", mode="book", max_tokens=10000, download=False)


@pytest.fixture
def fresh_caches():
    """AppTest instances in one process share Streamlit's caches (and so the session's runner)."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()  # stops a run a failed test left behind (on_release)


@pytest.fixture
def home(tmp_path, monkeypatch, fresh_caches):
    """An empty run store per test (this process and the app's AppTests), demo mode and a Tune storage
    from the environment off. A test file may define its own `home`."""
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CHARRNN_DEMO", raising=False)
    monkeypatch.delenv("CHARRNN_TUNE_STORAGE", raising=False)
    return RunStore()


@pytest.fixture(scope="module")
def corpus(time_machine_path):
    """The book's first 2,000 chars (book preprocessing): tiny runs' text."""
    return load_corpus("time_machine", mode="book", max_tokens=2000, download=False)


@pytest.fixture(scope="session")
def postgres_cluster():
    """A throwaway PostgreSQL cluster (tests/pg.py), stopped and removed at the end. In CI (`CI` set) a missing
    PostgreSQL fails the test (.ci/run installs Debian's); elsewhere it skips and says why."""
    why = pg.missing()
    if why:
        missing(why)
    cluster = pg.Cluster()
    try:
        cluster.start()
    except Exception as e:  # initdb or pg_ctl failed: their output says why
        cluster.stop()
        pytest.fail(f"the PostgreSQL cluster did not start: {e}\n{getattr(e, 'stderr', '')}\n{cluster.log()}")
    yield cluster
    cluster.stop()
