"""The run store: every run, its per-epoch curve, samples and checkpoints, in one database.

The CLI and the app write to the same store. By default it is one SQLite file (WAL mode, so readers
never block the writer and two writers wait for each other instead of failing) in the project's home
folder: ``CHARRNN_HOME``, else ``$XDG_DATA_HOME/charrnn``, else ``~/.local/share/charrnn``, where the
checkpoint files are too. ``CHARRNN_DATABASE_URL`` puts the tables on a server (`charrnn.runs.database`).

Checkpoints are kept as paths relative to that folder, so a copied or moved store keeps its own and
never reads or deletes another's; no file outside the folder is ever read or deleted through the store.

A run that was "running" in a process that no longer exists (killed, crashed, machine restarted) is
marked "interrupted" the next time the store is opened; a process is known by its pid and its start
time, so a pid reused by another process does not keep a dead run "running".
"""

import json
import os
import re
import socket
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import sqlalchemy as sa

from charrnn.runs import paths, schema
from charrnn.runs.database import Connection, StoreError, engine, is_sqlite, masked, store_url
from charrnn.runs.schema import EPOCH_FIELDS, alive, process_start, training_elsewhere

__all__ = ["STATUSES", "EPOCH_FIELDS", "RunStore", "StoreError", "check_id", "home_dir", "process_start"]

STOP_POLL = 2.0  # seconds between a training process's looks at `stop_asked`
STATUSES = ("running", "finished", "stopped", "interrupted", "diverged", "failed", "pruned")
RUN_ID = r"[0-9a-f]{1,32}"


def check_id(run_id: str) -> str:
    """Run ids are short hex strings; anything else (a path, SQL) is refused before any use."""
    if not isinstance(run_id, str) or not re.fullmatch(RUN_ID, run_id):
        raise ValueError(f"no run with id {run_id!r}; `python -m charrnn runs` lists them")
    return run_id


def home_dir() -> Path:
    if os.environ.get("CHARRNN_HOME"):
        return Path(os.environ["CHARRNN_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "charrnn"


class RunStore:
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

    def mark_interrupted(self) -> int:
        """Runs left "running" by a process of this host that is gone become "interrupted"."""
        host = socket.gethostname()
        with self._connect() as db:  # a read alone: most opens find nothing to mark
            rows = db.rows("SELECT id, pid, pid_start FROM runs WHERE status='running' AND host=:host", {"host": host})
        dead = [r for r in rows if not alive(r["pid"], r["pid_start"])]
        if dead:  # a write of its own (SQLite: a read turned write could meet another's commit and fail at once),
            with self._connect() as db:  # each row only if no process took the run up since it was read
                for r in dead:
                    db.execute(
                        "UPDATE runs SET status='interrupted', reason=:reason WHERE id=:id AND status='running' "
                        "AND host=:host AND pid=:pid",
                        {"reason": "the process running it ended before the run did", **r, "host": host},
                    )
        dead = [r["id"] for r in dead]
        for run_id in dead:  # a checkpoint its process was writing when it died: never completed
            for tmp in self._own_files(run_id, ".*.tmp"):
                tmp.unlink(missing_ok=True)
        return len(dead)

    def mark_stuck(self, run_id: str) -> None:
        """Mark a "running" run interrupted: its process is on another host, or stuck. Refused while its process
        is alive on this host (a delete could then pull the run from under it)."""
        run = self.run(run_id)
        status = run["status"]
        if status == "running" and run["host"] == socket.gethostname() and alive(run["pid"], run["pid_start"]):
            raise ValueError(
                f"run {run_id} is training in process {run['pid']} on this host ({run['host']}); stop it with Ctrl-C "
                f"where it runs, or `kill {run['pid']}` (it stops resumably), instead of marking it interrupted"
            )
        with self._connect() as db:
            done = db.execute(
                "UPDATE runs SET status='interrupted', reason='marked interrupted by hand', updated=:now "
                "WHERE id=:id AND status='running'",
                {"now": time.time(), "id": run_id},
            ).rowcount
        if not done:
            raise ValueError(f"run {run_id} is not running (it is {status}); only a running run can be interrupted")

    def create_run(self, config, corpus: dict, device: str, name: str | None = None) -> str:
        self.check_writable()
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
        self.check_writable(run_id)
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

    def ask_stop(self, run_id: str) -> dict:
        """Ask a running run to stop, through the database: the process training it, on any machine, stops it at a
        minibatch boundary within STOP_POLL seconds, resumably. Returns the run; ValueError unless it is running."""
        run = self.run(run_id)
        with self._connect() as db:
            asked = db.execute(
                "UPDATE runs SET stop_asked=:now WHERE id=:id AND status='running'", {"now": time.time(), "id": run_id}
            ).rowcount
        if not asked:
            raise ValueError(f"run {run_id} is not running (it is {run['status']}); there is nothing to stop")
        return run

    def stop_asked(self, run_id: str) -> bool:
        """Whether someone asked the run to stop since it last started training."""
        with self._connect() as db:
            row = db.row("SELECT stop_asked FROM runs WHERE id=:id", {"id": check_id(run_id)})
        return row is not None and row["stop_asked"] is not None

    def tag_run(self, run_id: str, study: str, trial: int) -> None:
        """Mark a run as trial `trial` of the tune study `study`."""
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET study=:study, trial=:trial WHERE id=:id",
                {"study": str(study)[:200], "trial": int(trial), "id": check_id(run_id)},
            )

    def check_writable(self, run_id: str | None = None) -> None:
        """StoreError now, before any training, when checkpoints (of `run_id`) could not be written."""
        folder = self.checkpoint_dir if run_id is None else self.checkpoint_dir / check_id(run_id)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-", suffix=".tmp"):
                pass
        except OSError as e:
            raise schema.unusable_folder(folder, e) from e

    def checkpoint_path(self, run_id: str, epoch: int) -> Path:
        """Where epoch `epoch` of the run is checkpointed; its folder is made here, StoreError if it cannot be."""
        folder = self.checkpoint_dir / check_id(run_id)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise schema.unusable_folder(folder, e) from e
        return folder / f"epoch-{epoch:05d}.pt"

    def add_checkpoint(self, run_id: str, epoch: int, path: str | Path) -> None:
        """Record a checkpoint file, which must be inside the store's folder; it is kept relative to it."""
        real = Path(path).resolve()
        if not real.is_relative_to(self._real):
            raise ValueError(f"checkpoint {path} is outside the run store {self.home}; save it at checkpoint_path()")
        with self._connect() as db:
            db.execute(
                "INSERT INTO checkpoints (run_id, epoch, path, created) VALUES (:id, :epoch, :path, :now) "
                "ON CONFLICT (run_id, epoch) DO UPDATE SET path=excluded.path, created=excluded.created",
                {
                    "id": check_id(run_id),
                    "epoch": epoch,
                    "path": real.relative_to(self._real).as_posix(),
                    "now": time.time(),
                },
            )

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
        """Delete a run that is not running, its curve and its checkpoint files (only those inside
        ``<home>/checkpoints/<run id>/``)."""
        run = self.run(run_id)
        if run["status"] == "running":
            raise ValueError(training_elsewhere(run))
        files = [self._inside(c["path"], self.checkpoint_dir / run_id) for c in self._checkpoint_rows(run_id)]
        files += self._own_files(run_id, "epoch-*.pt") + self._own_files(run_id, ".*.tmp")
        with self._connect() as db:
            db.execute("DELETE FROM runs WHERE id=:id", {"id": run_id})
        for path in filter(None, files):
            path.unlink(missing_ok=True)
        folder = self.checkpoint_dir / run_id
        if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()

    def owns(self, path: str | Path) -> bool:
        """Whether writing over `path` would damage this store or the visitors' file beside it (see
        `paths.owns`)."""
        return paths.owns(path, (self.path, self.home / paths.VISITORS), self.checkpoint_dir)

    def _inside(self, stored: str, folder: Path) -> Path | None:
        return paths.inside(self.home, self._real, stored, folder)

    def _own_files(self, run_id: str, pattern: str) -> list[Path]:
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

    def _checkpoint_rows(self, run_id: str) -> list[dict]:
        with self._connect() as db:
            return db.rows("SELECT * FROM checkpoints WHERE run_id=:id ORDER BY epoch", {"id": check_id(run_id)})

    def checkpoints(self, run_id: str) -> list[dict]:
        """The run's checkpoints, oldest first, `path` absolute under this store's home. A row whose path
        leads outside the home (an old absolute path, a symlink) is kept in the file but not listed."""
        found = [(c, self._inside(c["path"], self.home)) for c in self._checkpoint_rows(run_id)]
        return [{**c, "path": str(path)} for c, path in found if path is not None]

    def best_checkpoint(self, run_id: str) -> dict | None:
        """The checkpoint of the run's best held-out evaluation, with its `val_perplexity`; None without one."""
        with self._connect() as db:
            row = db.row(
                "SELECT c.epoch, e.val_perplexity FROM checkpoints c JOIN epochs e ON e.run_id=c.run_id "
                "AND e.epoch=c.epoch WHERE c.run_id=:id AND e.val_perplexity IS NOT NULL "
                "ORDER BY e.val_perplexity, c.epoch LIMIT 1",
                {"id": check_id(run_id)},
            )
        found = [c for c in self.checkpoints(run_id) if row is not None and c["epoch"] == row["epoch"]]
        return (
            {**found[0], "val_perplexity": row["val_perplexity"]}
            if found and Path(found[0]["path"]).is_file()
            else None
        )

    def delete_checkpoint(self, run_id: str, epoch: int) -> None:
        """Forget one checkpoint of the run and remove its file (only inside the run's own folder)."""
        rows = [c for c in self._checkpoint_rows(run_id) if c["epoch"] == epoch]
        with self._connect() as db:
            db.execute("DELETE FROM checkpoints WHERE run_id=:id AND epoch=:epoch", {"id": run_id, "epoch": epoch})
        for c in rows:
            path = self._inside(c["path"], self.checkpoint_dir / run_id)
            if path is not None:
                path.unlink(missing_ok=True)

    def last_checkpoint(self, run_id: str) -> dict | None:
        existing = [c for c in self.checkpoints(run_id) if Path(c["path"]).is_file()]
        return existing[-1] if existing else None

    @staticmethod
    def _run_dict(row) -> dict:
        d = dict(row)
        d["config"], d["corpus"] = json.loads(d["config"]), json.loads(d["corpus"])
        return d
