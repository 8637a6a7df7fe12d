"""Shared fixtures. Tests that need The Time Machine FAIL (never skip) when it is missing in CI."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

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


@pytest.fixture
def fresh_caches():
    """AppTest instances in one process share Streamlit's caches (and so the session's runner)."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()  # stops a run a failed test left behind (on_release)


CHROMIUM = "/usr/bin/chromium"  # Debian's; never `playwright install`
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def server(time_machine_path):
    """`streamlit run` on a free loopback port (CHARRNN_DATA_DIR and the private CHARRNN_HOME passed
    through); yields its URL; fails the test if the server printed a traceback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true"]
    cmd += ["--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"]
    env = {**os.environ, "CHARRNN_DATA_DIR": str(time_machine_path.parent)}
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start:\n{proc.stdout.read() if proc.poll() is not None else ''}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        assert "Traceback" not in out, out


@pytest.fixture
def browser():
    """Debian's Chromium, headless, through Playwright; missing pieces fail the test in CI."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if _in_ci():
            pytest.fail("playwright is missing: pip install -r requirements-dev.txt")
        pytest.skip("playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()
