"""A throwaway PostgreSQL cluster for tests: Debian's `postgresql` package (`initdb`, `pg_ctl`), a data
folder and a socket folder in a temporary directory, trust authentication, listening on 127.0.0.1 only
at a free port. Run as the `postgres` user when the tests run as root (PostgreSQL refuses root)."""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

BINARIES = "/usr/lib/postgresql/*/bin"


def bin_dir() -> Path | None:
    """The newest installed server's binaries, None when Debian's postgresql is not installed."""
    found = sorted(glob.glob(f"{BINARIES}/initdb"), key=lambda p: int(Path(p).parts[-3].split(".")[0]))
    return Path(found[-1]).parent if found else None


def missing() -> str | None:
    """Why no cluster can be started here, None when one can."""
    if bin_dir() is None:
        return f"PostgreSQL is not installed ({BINARIES}/initdb): apt-get install -y postgresql"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no 'postgres' user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root but runuser is missing"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """`start()` a cluster with a database `tune`; `url` reaches it; `stop()` ends it and removes its files."""

    def __init__(self):
        self.bin = bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="charrnn-pg-"))  # directly under /tmp: postgres can reach it
        self.data, self.sockets, self.port = self.dir / "data", self.dir / "sockets", free_port()
        self.started = False

    def _run(self, *cmd, check: bool = True) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *map(str, cmd)], capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> "Cluster":
        self.sockets.mkdir()
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            for path in (self.dir, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._run(self.bin / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} -c fsync=off"
        self._run(self.bin / "pg_ctl", "-D", self.data, "-o", options, "-l", self.dir / "log", "-w", "start")
        self.started = True
        self._run(self.bin / "createdb", "-h", "127.0.0.1", "-p", self.port, "-U", "postgres", "tune")
        return self

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/tune"

    def database(self, name: str) -> str:
        """The URL of a new, empty database `name` in the cluster."""
        self._run(self.bin / "createdb", "-h", "127.0.0.1", "-p", self.port, "-U", "postgres", name)
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def restart(self):
        """Stop the server at once (as a crash would) and start it again on the same port."""
        self.halt()
        self.resume()

    def halt(self):
        """Stop the server at once, as a crash would (the cluster stays: `resume` starts it again)."""
        self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def resume(self):
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} -c fsync=off"
        self._run(self.bin / "pg_ctl", "-D", self.data, "-o", options, "-l", self.dir / "log", "-w", "start")

    def log(self) -> str:
        path = self.dir / "log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self):
        if self.started:
            self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", check=False)
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)
