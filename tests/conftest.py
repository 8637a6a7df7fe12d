"""Shared fixtures. Tests that need The Time Machine FAIL (never skip) when it is missing in CI."""

import os

import pytest

from charrnn.data import CorpusError, find_time_machine, load_corpus


def _in_ci() -> bool:
    return bool(os.environ.get("CI")) or bool(os.environ.get("CHARRNN_DATA_DIR"))


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
    """Path of the verified Time Machine text (CHARRNN_DATA_DIR or the cache; never downloads)."""
    try:
        path = find_time_machine()
    except CorpusError as e:
        pytest.fail(str(e))
    if path is None:
        msg = (
            "The Time Machine is missing: set CHARRNN_DATA_DIR to a folder holding timemachine.txt "
            "(CI uses ../shared/data) or run `python -m charrnn info` once online to cache it."
        )
        if _in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def full_corpus(time_machine_path):
    """The whole book, book preprocessing."""
    return load_corpus("time_machine", mode="book", max_tokens=None, download=False)


@pytest.fixture(scope="session")
def recipe_corpus(time_machine_path):
    """The chapter's training text: the first 10,000 chars."""
    return load_corpus("time_machine", mode="book", max_tokens=10000, download=False)
