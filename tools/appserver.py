"""Start and stop the app's own server (`streamlit run streamlit_app.py`) on a free loopback port.

One place for how the tests (tests/support.py, tests/browser/conftest.py) and the measuring tools (tools/*.py)
start the app and the Chromium that drives it, so that a change to either is made once:

    proc, url = start(env={"CHARRNN_HOME": home})
    ...
    output = stop(proc)  # everything the server printed

The server's output goes to a temporary file rather than a pipe: nobody reads a pipe while the
server runs, and a chatty server would block once the pipe's buffer is full.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"  # Debian's (never `playwright install`)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.read() == b"ok"
    except OSError:
        return False


def start(env: dict[str, str] | None = None, timeout: float = 60.0) -> tuple[subprocess.Popen, str]:
    """`streamlit run` headless on a free loopback port, with `env` on top of this process's
    environment; returns (process, URL) once `/_stcore/health` answers. Raises RuntimeError, with
    what the server printed, when it exits or stays silent for `timeout` seconds."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true"]
    cmd += ["--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"]
    log = tempfile.TemporaryFile(mode="w+", prefix="charrnn-server-")
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
    proc.log = log  # read back by stop()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while not _healthy(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"streamlit did not start within {timeout:g} s:\n{stop(proc)}")
        time.sleep(0.5)
    return proc, url


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> str:
    """Stop a server from start() (SIGTERM, SIGKILL after `timeout` s) and return all it printed."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.log.seek(0)
    output = proc.log.read()
    proc.log.close()
    return output
