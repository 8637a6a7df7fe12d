"""The run store: every run, its per-epoch curve, samples and checkpoints, in one database.

The CLI and the app write to the same store. By default it is one SQLite file (WAL mode, so readers
never block the writer and two writers wait for each other instead of failing) in the project's home
folder: ``CHARRNN_HOME``, else ``$XDG_DATA_HOME/charrnn``, else ``~/.local/share/charrnn``.
``CHARRNN_DATABASE_URL`` puts the tables on a server (`charrnn.runs.database`).

Checkpoints are rows too: their bytes with their SHA-256, checked on every load, so any machine with the URL can
generate from, resume or download any run. The home's ``checkpoints/<run id>/`` folder only ever holds what a run
kept there when its database was away too long (`charrnn.runs.spool`), and no file outside it is read or deleted
through the store.

A run that was "running" in a process that no longer exists (killed, crashed, machine restarted) is
marked "interrupted" the next time the store is opened; a process is known by its pid and its start
time, so a pid reused by another process does not keep a dead run "running".
"""

import hashlib
import json
import os
import re
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import sqlalchemy as sa

from charrnn.runs import paths, schema, spool
from charrnn.runs.database import Connection, StoreError, engine, is_sqlite, masked, store_url
from charrnn.runs.ownership import RUN_ID, Ownership, check_id
from charrnn.runs.schema import EPOCH_FIELDS, process_start, training_elsewhere

__all__ = ["STATUSES", "EPOCH_FIELDS", "RunStore", "StoreError", "home_dir", "process_start"]

STOP_POLL = 2.0  # seconds between a training process's looks at `stop_asked`
STATUSES = ("running", "finished", "stopped", "interrupted", "diverged", "failed", "pruned")


def home_dir() -> Path:
    if os.environ.get("CHARRNN_HOME"):
        return Path(os.environ["CHARRNN_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "charrnn"


class DamagedCheckpoint(ValueError):
    """A checkpoint whose bytes in the database no longer match their SHA-256."""


class RunStore(Ownership):
    """Runs, epochs and checkpoints behind one URL (by default ``<home>/runs.sqlite``); one short transaction per
    call, so any thread (a training worker, the UI) may use the same store object. Opening a folder, file or
    server that cannot be a store raises StoreError (a ValueError) with one line that names it and the fix."""

    def __init__(self, home: str | Path | None = None, url: str | None = None):
        self.home = (Path(home).expanduser() if home is not None else home_dir()).absolute()
        self.url = store_url(self.home, url)
        self.path = Path(self.url.database) if is_sqlite(self.url) else None  # the SQLite file, when it is one
        self.where = str(self.path) if self.path is not None else masked(self.url)  # as messages name the store
        self.checkpoint_dir = self.home / "checkpoints"
        schema.open_store(self.home, self.url)
        self._real = self.home.resolve()  # the folder itself, symlinks followed: every file used is inside it
        self.adopt_visitors()
        self.mark_interrupted()

    @contextmanager
    def _connect(self):
        try:  # the file damaged, or its folder removed or made read-only, or the server gone, since it was opened
            with engine(self.url).begin() as db:  # one transaction: committed on success, rolled back on error
                yield Connection(db)
        except sa.exc.IntegrityError as e:  # a row that another process deleted under this one (a run, mostly)
            raise StoreError(f"the run store {self.where} no longer holds a run this process was writing to") from e
        except sa.exc.DBAPIError as e:
            error = schema.as_store_error(e, self.home, self.url)
            if error is None:
                raise
            raise error from e

    def create_run(self, config, corpus: dict, device: str, name: str | None = None) -> str:
        run_id = uuid.uuid4().hex[:10]
        now = time.time()
        cfg = config if isinstance(config, dict) else asdict(config)
        name = name or time.strftime("run %Y-%m-%d %H:%M:%S", time.localtime(now))
        row = dict(id=run_id, name=name, created=now, updated=now, config=json.dumps(cfg), corpus=json.dumps(corpus))
        row.update(device=device, **self._process())
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (id, name, created, updated, config, corpus, status, device, host, pid, pid_start) "
                "VALUES (:id, :name, :created, :updated, :config, :corpus, 'running', :device, :host, :pid, "
                ":pid_start)",
                row,
            )
        return run_id

    @staticmethod
    def _process() -> dict:
        """This process, as a run records it: host, pid and start time."""
        return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": process_start(os.getpid())}

    def add_epoch(self, run_id: str, stats) -> None:
        row = stats if isinstance(stats, dict) else asdict(stats)
        row = {**row, "val_points": json.dumps(row["val_points"]) if row.get("val_points") else None}
        with self._connect() as db:
            db.execute(schema.UPSERT_EPOCH, {"run_id": run_id, **{f: row.get(f) for f in EPOCH_FIELDS}})
            db.execute("UPDATE runs SET updated=:now WHERE id=:id", {"now": time.time(), "id": run_id})

    def resume_run(self, run_id: str, from_epoch: int, num_epochs: int | None = None) -> None:
        """Mark a run as running again in this process, forgetting epochs after its checkpoint; with
        `num_epochs`, its stored config says it now trains that far (so the tables show its real goal)."""
        config = self.run(run_id)["config"]
        if num_epochs is not None:
            config["num_epochs"] = num_epochs
        with self._connect() as db:  # one write transaction: of two processes resuming at once, one claims the run
            claimed = db.execute(
                "UPDATE runs SET status='running', reason='', config=:config, updated=:now, host=:host, pid=:pid, "
                "pid_start=:pid_start, stop_asked=NULL WHERE id=:id AND status!='running'",
                {"config": json.dumps(config), "now": time.time(), **self._process(), "id": run_id},
            ).rowcount
            if not claimed:
                row = db.row("SELECT * FROM runs WHERE id=:id", {"id": run_id})
                raise ValueError(training_elsewhere(self._run_dict(row)))
            db.execute("DELETE FROM epochs WHERE run_id=:id AND epoch>:epoch", {"id": run_id, "epoch": from_epoch})

    def tag_run(self, run_id: str, study: str, trial: int) -> None:
        """Mark a run as trial `trial` of the tune study `study`."""
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET study=:study, trial=:trial WHERE id=:id",
                {"study": str(study)[:200], "trial": int(trial), "id": check_id(run_id)},
            )

    def add_checkpoint(self, run_id: str, epoch: int, data: bytes) -> None:
        """Keep a checkpoint (`torch.save`'s bytes) as epoch `epoch` of the run, with its SHA-256."""
        row = {"run_id": check_id(run_id), "epoch": int(epoch), "data": bytes(data), "now": time.time()}
        with self._connect() as db:
            db.execute(
                "INSERT INTO checkpoints (run_id, epoch, data, sha256, size, created) "
                "VALUES (:run_id, :epoch, :data, :sha256, :size, :now) ON CONFLICT (run_id, epoch) DO UPDATE SET "
                "data=excluded.data, sha256=excluded.sha256, size=excluded.size, created=excluded.created",
                {**row, "sha256": hashlib.sha256(row["data"]).hexdigest(), "size": len(row["data"])},
            )

    def checkpoint_bytes(self, run_id: str, epoch: int) -> bytes:
        """The bytes of the run's checkpoint of `epoch`, checked against their SHA-256; DamagedCheckpoint when
        they differ, ValueError when there is no such checkpoint."""
        with self._connect() as db:
            row = db.row(
                "SELECT data, sha256 FROM checkpoints WHERE run_id=:id AND epoch=:epoch",
                {"id": check_id(run_id), "epoch": int(epoch)},
            )
        if row is None:
            kept = ", ".join(str(c["epoch"]) for c in self.checkpoints(run_id)) or "none"
            raise ValueError(f"run {run_id} has no checkpoint of epoch {epoch} (kept: {kept})")
        data = bytes(row["data"])
        if hashlib.sha256(data).hexdigest() != row["sha256"]:
            raise DamagedCheckpoint(
                f"run {run_id}'s checkpoint of epoch {epoch} is damaged in the run store {self.where} (its bytes "
                "no longer match their SHA-256); use another epoch, or train again"
            )
        return data

    def finish(self, run_id: str, status: str, reason: str = "") -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET status=:status, reason=:reason, updated=:now, stop_asked=NULL WHERE id=:id",
                {"status": status, "reason": reason, "now": time.time(), "id": run_id},
            )

    def rename(self, run_id: str, name: str) -> None:
        name = name.strip()
        if not name:
            raise ValueError("name is empty; type a name for the run")
        with self._connect() as db:
            db.execute("UPDATE runs SET name=:name WHERE id=:id", {"name": name[:200], "id": run_id})

    def delete(self, run_id: str) -> None:
        """Delete a run that is not running, its curve and its checkpoints (and any checkpoint file left in
        ``<home>/checkpoints/<run id>/`` by a run that ended without its database)."""
        run = self.run(run_id)
        if run["status"] == "running":
            raise ValueError(training_elsewhere(run))
        with self._connect() as db:
            db.execute("DELETE FROM runs WHERE id=:id", {"id": run_id})
        for pattern in ("epoch-*.pt", ".*.tmp", spool.EPOCHS):
            for path in self.own_files(run_id, pattern):
                path.unlink(missing_ok=True)
        paths.remove_if_empty(self.checkpoint_dir / run_id)

    def owns(self, path: str | Path) -> bool:
        """Whether writing over `path` would damage this store or the visitors' file beside it (see
        `paths.owns`)."""
        return paths.owns(path, (self.path, self.home / paths.VISITORS), self.checkpoint_dir)

    def own_files(self, run_id: str, pattern: str) -> list[Path]:
        """Files matching `pattern` in the run's checkpoint folder, only if they really are inside it."""
        if not re.fullmatch(RUN_ID, run_id):  # an id from an old or foreign row
            return []
        return paths.own_files(self.home, self._real, self.checkpoint_dir / run_id, pattern)

    def runs(self, status: str | None = None, run_id: str | None = None) -> list[dict]:
        """Every run (or those with `status`, or the one `run_id`), newest first, with final and best
        perplexity (training and held-out, with the held-out best's epoch) and last tokens/s."""
        where = {"status": status, "id": None if run_id is None else check_id(run_id)}
        where = {column: value for column, value in where.items() if value is not None}
        clause = " AND ".join(f"r.{column} = :{column}" for column in where)
        query = schema.RUNS_QUERY.format(where=f"WHERE {clause}" if clause else "")
        with self._connect() as db:
            return [self._run_dict(row) for row in db.rows(query, where)]

    def run(self, run_id: str) -> dict:
        check_id(run_id)
        with self._connect() as db:
            row = db.row("SELECT * FROM runs WHERE id=:id", {"id": run_id})
        if row is None:
            raise ValueError(f"no run with id {run_id!r}; `python -m charrnn runs` lists them")
        return self._run_dict(row)

    def history(self, run_id: str) -> list[dict]:
        check_id(run_id)
        with self._connect() as db:
            rows = db.rows(
                f"SELECT {', '.join(EPOCH_FIELDS)} FROM epochs WHERE run_id=:id ORDER BY epoch", {"id": run_id}
            )
        return [{**r, "val_points": [tuple(p) for p in json.loads(r["val_points"] or "[]")]} for r in rows]

    def checkpoints(self, run_id: str) -> list[dict]:
        """The run's checkpoints, oldest first: run_id, epoch, sha256, size (bytes) and created (their bytes:
        `checkpoint_bytes`)."""
        with self._connect() as db:
            return db.rows(
                f"SELECT {schema.CHECKPOINT_FACTS} FROM checkpoints WHERE run_id=:id ORDER BY epoch",
                {"id": check_id(run_id)},
            )

    def best_checkpoint(self, run_id: str) -> dict | None:
        """The checkpoint of the run's best held-out evaluation, with its `val_perplexity`; None without one."""
        with self._connect() as db:
            return db.row(
                "SELECT c.run_id, c.epoch, c.sha256, c.size, c.created, e.val_perplexity FROM checkpoints c "
                "JOIN epochs e ON e.run_id=c.run_id AND e.epoch=c.epoch WHERE c.run_id=:id "
                "AND e.val_perplexity IS NOT NULL ORDER BY e.val_perplexity, c.epoch LIMIT 1",
                {"id": check_id(run_id)},
            )

    def delete_checkpoint(self, run_id: str, epoch: int) -> None:
        """Forget one checkpoint of the run."""
        with self._connect() as db:
            db.execute(
                "DELETE FROM checkpoints WHERE run_id=:id AND epoch=:epoch", {"id": check_id(run_id), "epoch": epoch}
            )

    def last_checkpoint(self, run_id: str) -> dict | None:
        kept = self.checkpoints(run_id)
        return kept[-1] if kept else None

    @staticmethod
    def _run_dict(row) -> dict:
        d = dict(row)
        d["config"], d["corpus"] = json.loads(d["config"]), json.loads(d["corpus"])
        return d
