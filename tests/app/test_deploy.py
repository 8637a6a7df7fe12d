"""The deploy recipes (issue 24): what can be tried here without Docker or the hosts. The Dockerfile's own command
line, with its environment, starts the app from a copy of the repository's files in this (clean, CI-built) venv,
and Streamlit's health endpoint and the Dockerfile's health check answer; the secrets files are what Streamlit and
the run store need. Nothing here builds the image or reaches Community Cloud or Hugging Face (README "Deploy")."""

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import appserver
import tomllib
from support import ROOT

from charrnn.runs.database import store_url

DOCKERFILE = (ROOT / "Dockerfile").read_text()
AUTH_KEYS = {"redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url"}


def instruction(name: str) -> list[str]:
    """The Dockerfile's `name` instructions, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line[len(name) :].strip() for line in text.splitlines() if line.startswith(name + " ")]


def tracked() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()


def environment() -> dict[str, str]:
    env = {}
    for line in instruction("ENV"):
        env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    return env


def test_the_image_is_cpu_torch_a_non_root_user_and_port_8501():
    assert "download.pytorch.org/whl/cpu" in DOCKERFILE
    assert instruction("USER") == ["user"] and instruction("EXPOSE") == ["8501"]
    assert "--server.port=8501" in json.loads(instruction("CMD")[0])[-1]
    assert "/_stcore/health" in instruction("HEALTHCHECK")[0]
    space = (ROOT / "deploy" / "huggingface-space-README.md").read_text()
    assert "sdk: docker" in space and "app_port: 8501" in space


def test_the_dockerfiles_command_starts_the_app_and_its_health_check_passes(tmp_path):
    """From a copy of the tracked files (so the secrets it writes land there), as the image would run it: the
    Dockerfile's ENV, a fresh HOME, this venv's bin first on PATH; only the port is a free one, not 8501."""
    app = tmp_path / "app"
    for name in subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split():
        if (ROOT / name).is_file():
            (app / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, app / name)
    port = appserver.free_port()
    secrets = f'[connections.charrnn]\nurl = "sqlite:///{tmp_path / "store.sqlite"}"\n'
    env = {
        **environment(),
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "STREAMLIT_SECRETS": secrets,
    }
    command = [part.replace("8501", str(port)) for part in json.loads(instruction("CMD")[0])]
    log = (tmp_path / "server.log").open("w+")
    server = subprocess.Popen(command, cwd=app, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as answer:
                    assert answer.read() == b"ok"
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, log.seek(0) or log.read()
                time.sleep(0.5)
        check = [part.replace("8501", str(port)) for part in json.loads(instruction("HEALTHCHECK")[0].split("CMD ")[1])]
        assert subprocess.run(check, env=env, timeout=30).returncode == 0
        assert tomllib.loads((app / ".streamlit" / "secrets.toml").read_text()) == tomllib.loads(secrets)
        assert (app / ".streamlit" / "config.toml").is_file()  # the app's own settings came with the copy
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.seek(0)
        output = log.read()
        log.close()
    assert "Traceback" not in output, output


def test_the_community_cloud_secrets_name_what_streamlit_and_the_run_store_need(tmp_path):
    secrets = tomllib.loads((ROOT / "deploy" / "community-cloud-secrets.toml").read_text())
    assert AUTH_KEYS <= set(secrets["auth"]) and secrets["auth"]["redirect_uri"].endswith("/oauth2callback")
    url = store_url(tmp_path, secrets["connections"]["charrnn"]["url"])  # a URL the run store accepts
    assert url.get_backend_name() == "postgresql" and url.password == "PASSWORD"
    assert all(isinstance(a, str) and "@" in a for a in secrets["charrnn"]["admins"])


def test_no_secrets_file_is_committed_or_copied_into_the_image():
    assert ".streamlit/secrets.toml" not in tracked()
    assert ".streamlit/secrets.toml" in (ROOT / ".dockerignore").read_text().split()
