"""The run store: every run, its per-epoch curve, samples and checkpoints, in one SQLite file.

The CLI and the app write to the same store (WAL mode, so readers never block the writer and two
writers wait for each other instead of failing). It lives in the project's home folder:
``CHARRNN_HOME``, else ``$XDG_DATA_HOME/charrnn``, else ``~/.local/share/charrnn``.

A run that was "running" in a process that no longer exists (killed, crashed, machine restarted) is
marked "interrupted" the next time the store is opened.
"""

import json
import os
import re
import socket
import sqlite3
import time
import uuid
from contextlib import closing, contextmanager
from dataclasses import asdict
from pathlib import Path

STATUSES = ("running", "finished", "stopped", "interrupted", "diverged", "failed")
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
    config TEXT NOT NULL, corpus TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    device TEXT NOT NULL DEFAULT '', host TEXT NOT NULL DEFAULT '', pid INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, epoch INTEGER NOT NULL,
    perplexity REAL, tokens_per_sec REAL, grad_norm REAL, clipped REAL, elapsed REAL, loss REAL,
    sample TEXT, PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, epoch INTEGER NOT NULL,
    path TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (run_id, epoch)
);
"""
EPOCH_FIELDS = ("epoch", "perplexity", "tokens_per_sec", "grad_norm", "clipped", "elapsed", "loss", "sample")
INSERT_EPOCH = (
    f"INSERT OR REPLACE INTO epochs (run_id, {', '.join(EPOCH_FIELDS)}) VALUES (?{', ?' * len(EPOCH_FIELDS)})"
)


def check_id(run_id: str) -> str:
    """Run ids are short hex strings; anything else (a path, SQL) is refused before any use."""
    if not isinstance(run_id, str) or not re.fullmatch(r"[0-9a-f]{1,32}", run_id):
        raise ValueError(f"no run with id {run_id!r}; `python -m charrnn runs` lists them")
    return run_id


def home_dir() -> Path:
    if os.environ.get("CHARRNN_HOME"):
        return Path(os.environ["CHARRNN_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "charrnn"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunStore:
    """Runs, epochs and checkpoints in ``<home>/runs.sqlite``; one short connection per call, so any
    thread (a training worker, the UI) may use the same store object."""

    def __init__(self, home: str | Path | None = None):
        self.home = Path(home) if home is not None else home_dir()
        self.home.mkdir(parents=True, exist_ok=True)
        self.path = self.home / "runs.sqlite"
        self.checkpoint_dir = self.home / "checkpoints"
        with self._connect() as db:
            db.executescript(SCHEMA)
        self.mark_interrupted()

    @contextmanager
    def _connect(self):
        with closing(sqlite3.connect(self.path, timeout=30)) as db:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=30000")
            with db:  # one transaction: committed on success, rolled back on error
                yield db

    def mark_interrupted(self) -> int:
        """Runs left "running" by a process of this host that is gone become "interrupted"."""
        host = socket.gethostname()
        with self._connect() as db:
            rows = db.execute("SELECT id, pid FROM runs WHERE status='running' AND host=?", (host,)).fetchall()
            dead = [r["id"] for r in rows if not _alive(r["pid"])]
            for run_id in dead:
                db.execute(
                    "UPDATE runs SET status='interrupted', reason=? WHERE id=?",
                    ("the process running it ended before the run did", run_id),
                )
        for run_id in dead:  # a checkpoint its process was writing when it died: never completed
            for tmp in (self.checkpoint_dir / run_id).glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
        return len(dead)

    def create_run(self, config, corpus: dict, device: str, name: str | None = None) -> str:
        run_id = uuid.uuid4().hex[:10]
        now = time.time()
        cfg = config if isinstance(config, dict) else asdict(config)
        name = name or time.strftime("run %Y-%m-%d %H:%M:%S", time.localtime(now))
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (id, name, created, updated, config, corpus, status, device, host, pid) "
                "VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                (
                    run_id,
                    name,
                    now,
                    now,
                    json.dumps(cfg),
                    json.dumps(corpus),
                    device,
                    socket.gethostname(),
                    os.getpid(),
                ),
            )
        return run_id

    def add_epoch(self, run_id: str, stats) -> None:
        row = stats if isinstance(stats, dict) else asdict(stats)
        with self._connect() as db:
            db.execute(
                INSERT_EPOCH,
                (run_id, *(row.get(f) for f in EPOCH_FIELDS)),
            )
            db.execute("UPDATE runs SET updated=? WHERE id=?", (time.time(), run_id))

    def resume_run(self, run_id: str, from_epoch: int) -> None:
        """Mark a run as running again in this process, forgetting epochs after its checkpoint."""
        with self._connect() as db:
            db.execute("DELETE FROM epochs WHERE run_id=? AND epoch>?", (run_id, from_epoch))
            db.execute(
                "UPDATE runs SET status='running', reason='', updated=?, host=?, pid=? WHERE id=?",
                (time.time(), socket.gethostname(), os.getpid(), run_id),
            )

    def checkpoint_path(self, run_id: str, epoch: int) -> Path:
        return self.checkpoint_dir / run_id / f"epoch-{epoch:05d}.pt"

    def add_checkpoint(self, run_id: str, epoch: int, path: Path) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO checkpoints (run_id, epoch, path, created) VALUES (?, ?, ?, ?)",
                (run_id, epoch, str(path), time.time()),
            )

    def finish(self, run_id: str, status: str, reason: str = "") -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET status=?, reason=?, updated=? WHERE id=?", (status, reason, time.time(), run_id)
            )

    def rename(self, run_id: str, name: str) -> None:
        name = name.strip()
        if not name:
            raise ValueError("name is empty; type a name for the run")
        with self._connect() as db:
            db.execute("UPDATE runs SET name=? WHERE id=?", (name[:200], run_id))

    def delete(self, run_id: str) -> None:
        """Delete a run, its curve and its checkpoint files."""
        check_id(run_id)
        for ckpt in self.checkpoints(run_id):
            Path(ckpt["path"]).unlink(missing_ok=True)
        folder = self.checkpoint_dir / run_id
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        with self._connect() as db:
            db.execute("DELETE FROM runs WHERE id=?", (run_id,))

    def runs(self, status: str | None = None) -> list[dict]:
        """Every run (or those with `status`), newest first, with final and best perplexity and last tokens/s."""
        where = "" if status is None else "WHERE r.status = ?"
        query = f"""
            SELECT r.*, COUNT(e.epoch) AS epochs, MIN(e.perplexity) AS best_perplexity,
                   (SELECT perplexity FROM epochs WHERE run_id=r.id ORDER BY epoch DESC LIMIT 1) AS final_perplexity,
                   (SELECT tokens_per_sec FROM epochs WHERE run_id=r.id ORDER BY epoch DESC LIMIT 1) AS tokens_per_sec,
                   MAX(e.elapsed) AS duration
            FROM runs r LEFT JOIN epochs e ON e.run_id = r.id {where} GROUP BY r.id ORDER BY r.created DESC"""
        with self._connect() as db:
            return [self._run_dict(row) for row in db.execute(query, () if status is None else (status,))]

    def run(self, run_id: str) -> dict:
        check_id(run_id)
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise ValueError(f"no run with id {run_id!r}; `python -m charrnn runs` lists them")
        return self._run_dict(row)

    def history(self, run_id: str) -> list[dict]:
        check_id(run_id)
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {', '.join(EPOCH_FIELDS)} FROM epochs WHERE run_id=? ORDER BY epoch", (run_id,)
            ).fetchall()
        return [dict(r) for r in rows]

    def checkpoints(self, run_id: str) -> list[dict]:
        check_id(run_id)
        with self._connect() as db:
            rows = db.execute("SELECT * FROM checkpoints WHERE run_id=? ORDER BY epoch", (run_id,)).fetchall()
        return [dict(r) for r in rows]

    def last_checkpoint(self, run_id: str) -> dict | None:
        existing = [c for c in self.checkpoints(run_id) if Path(c["path"]).is_file()]
        return existing[-1] if existing else None

    @staticmethod
    def _run_dict(row) -> dict:
        d = dict(row)
        d["config"], d["corpus"] = json.loads(d["config"]), json.loads(d["corpus"])
        return d
