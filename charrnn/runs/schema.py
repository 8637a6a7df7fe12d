"""The run store's schema, its migrations, the checks made when a store is opened, and whether a run's process lives.

Opening never changes a file it does not recognise: a damaged or foreign ``runs.sqlite`` is refused
with a StoreError before anything is written to it. A store written by an older version is brought
up to date in one transaction (new columns; checkpoint paths made relative to the store's folder,
so a copied or moved store keeps its checkpoints and never reaches into the original's).
"""

import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path, PurePath

SQLITE_HEADER = b"SQLite format 3\x00"
TABLES = (
    """CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
    config TEXT NOT NULL, corpus TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    device TEXT NOT NULL DEFAULT '', host TEXT NOT NULL DEFAULT '', pid INTEGER NOT NULL DEFAULT 0,
    pid_start INTEGER, study TEXT, trial INTEGER)""",
    """CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, epoch INTEGER NOT NULL,
    perplexity REAL, tokens_per_sec REAL, grad_norm REAL, clipped REAL, elapsed REAL, loss REAL,
    sample TEXT, val_perplexity REAL, PRIMARY KEY (run_id, epoch))""",
    """CREATE TABLE IF NOT EXISTS checkpoints (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, epoch INTEGER NOT NULL,
    path TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (run_id, epoch))""",
)
# Columns added after the first release: (table, column) -> type. pid_start is the process's start
# time (Linux: clock ticks since boot), so a pid reused after a crash is not taken for the run's;
# study and trial tag a run that is a trial of a `charrnn tune` search.
ADDED_COLUMNS = {
    ("runs", "pid_start"): "INTEGER",
    ("epochs", "val_perplexity"): "REAL",
    ("runs", "study"): "TEXT",
    ("runs", "trial"): "INTEGER",
    ("epochs", "val_points"): "TEXT",  # JSON [[epochs trained, held-out perplexity], ...] inside the epoch
}
# What a table must have to be ours; a table of the same name without these belongs to something else.
REQUIRED = {
    "runs": {"id", "name", "created", "updated", "config", "corpus", "status", "pid"},
    "epochs": {"run_id", "epoch", "perplexity"},
    "checkpoints": {"run_id", "epoch", "path"},
}
# Checkpoint rows whose path may be absolute (POSIX, Windows drive or UNC): written before paths were relative.
ABSOLUTE_ROWS = "SELECT run_id, epoch, path FROM checkpoints WHERE path LIKE '/%' OR path LIKE '\\%' OR path GLOB '?:*'"

EPOCH_FIELDS = (
    "epoch", "perplexity", "tokens_per_sec", "grad_norm", "clipped", "elapsed", "loss", "sample", "val_perplexity",
    "val_points",
)  # fmt: skip
INSERT_EPOCH = (
    f"INSERT OR REPLACE INTO epochs (run_id, {', '.join(EPOCH_FIELDS)}) VALUES (?{', ?' * len(EPOCH_FIELDS)})"
)
RUNS_QUERY = """
    SELECT r.*, COUNT(e.epoch) AS epochs, MIN(e.perplexity) AS best_perplexity,
           (SELECT perplexity FROM epochs WHERE run_id=r.id ORDER BY epoch DESC LIMIT 1) AS final_perplexity,
           (SELECT tokens_per_sec FROM epochs WHERE run_id=r.id ORDER BY epoch DESC LIMIT 1) AS tokens_per_sec,
           MAX(e.elapsed) AS duration, MIN(e.val_perplexity) AS best_val_perplexity,
           (SELECT val_perplexity FROM epochs WHERE run_id=r.id AND val_perplexity IS NOT NULL
            ORDER BY epoch DESC LIMIT 1) AS final_val_perplexity,
           (SELECT epoch FROM epochs WHERE run_id=r.id AND val_perplexity IS NOT NULL
            ORDER BY val_perplexity, epoch LIMIT 1) AS best_val_epoch
    FROM runs r LEFT JOIN epochs e ON e.run_id = r.id {where} GROUP BY r.id ORDER BY r.created DESC"""


class StoreError(ValueError):
    """The run store's folder or file cannot be used; the message names it and what to do."""


def not_a_store(path: Path) -> StoreError:
    return StoreError(
        f"{path} is not a charrnn run store (damaged, or another kind of file): move it aside "
        "(nothing was changed); a new store is created in its place"
    )


def _reason(e: Exception) -> str:
    if isinstance(e, FileExistsError):
        return "it exists and is not a folder"
    if isinstance(e, NotADirectoryError):
        return "a part of the path is a file, not a folder"
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, OSError):
        return e.strerror or type(e).__name__
    return str(e)


def unusable_home(home: Path, e: Exception) -> StoreError:
    return StoreError(f"{home} cannot hold the run store ({_reason(e)}): set CHARRNN_HOME to a writable folder")


def unusable_folder(folder: Path, e: Exception) -> StoreError:
    return StoreError(
        f"{folder} cannot hold checkpoints ({_reason(e)}): make it a writable folder, "
        "or set CHARRNN_HOME to a writable folder"
    )


def open_store(home: Path, path: Path) -> None:
    """Create or update the store at `path` in the folder `home`; StoreError when either is unusable."""
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise unusable_home(home, e) from e
    _check_header(home, path)
    try:
        with closing(sqlite3.connect(path, timeout=30, isolation_level=None)) as db:
            db.row_factory = sqlite3.Row
            _check_tables(db, path)  # before any write: a foreign database is left exactly as it was
            _use_wal(db)
            if _outdated(db, home):  # most opens write nothing, so many readers never queue for the lock
                db.execute("BEGIN IMMEDIATE")  # two processes opening an old store migrate it one after the other
                try:
                    _migrate(db, home)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
    except sqlite3.DatabaseError as e:
        raise as_store_error(e, home, path) or not_a_store(path) from e


# SQLite's error names (their prefixes: extended codes such as SQLITE_IOERR_WRITE share them) that say the
# file is damaged or not a database, and those that say the folder or disk cannot be used.
DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
UNUSABLE = ("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_PERM", "SQLITE_BUSY")


def as_store_error(e: sqlite3.Error, home: Path, path: Path) -> StoreError | None:
    """The StoreError a user should see for SQLite's `e`; None for any other error (a bug, not the file)."""
    name = getattr(e, "sqlite_errorname", None) or ""
    if name.startswith(DAMAGED) or type(e) is sqlite3.DatabaseError:
        return not_a_store(path)
    if name.startswith(UNUSABLE):
        return unusable_home(home, e)
    return None


def _use_wal(db, tries: int = 200) -> None:
    """Switch the file to WAL (it stays so). When two processes switch a new store at once, SQLite answers
    the second "locked" at once, skipping the busy timeout so as not to deadlock: it waits and tries again."""
    for attempt in range(tries):
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if attempt == tries - 1 or not (getattr(e, "sqlite_errorname", None) or "").startswith("SQLITE_BUSY"):
                raise
            time.sleep(0.05)


def _check_header(home: Path, path: Path) -> None:
    """Refuse, before SQLite opens it, a file that is not an SQLite database (an empty file is a new store)."""
    try:
        if path.exists() and not path.is_file():
            raise not_a_store(path)
        if not path.exists():
            return
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as e:
        raise unusable_home(home, e) from e
    if head and head != SQLITE_HEADER:
        raise not_a_store(path)


def _columns(db, table: str) -> set[str]:
    return {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}


def _check_tables(db, path: Path) -> None:
    tables = {row["name"] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if tables and "runs" not in tables:
        raise not_a_store(path)
    for table, needed in REQUIRED.items():
        if table in tables and not needed <= _columns(db, table):
            raise not_a_store(path)


def _outdated(db, home: Path) -> bool:
    tables = {row["name"] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not set(REQUIRED) <= tables:
        return True
    if any(column not in _columns(db, table) for table, column in ADDED_COLUMNS):
        return True
    rows = db.execute(ABSOLUTE_ROWS).fetchall()  # read in full: an open cursor would pin an old snapshot
    return any(relative_path(r["path"], r["run_id"], home) != r["path"] for r in rows)


def _migrate(db, home: Path) -> None:
    for statement in TABLES:
        db.execute(statement)
    for (table, column), kind in ADDED_COLUMNS.items():
        if column not in _columns(db, table):
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    for row in db.execute(ABSOLUTE_ROWS).fetchall():
        new = relative_path(row["path"], row["run_id"], home)
        if new != row["path"]:
            db.execute("UPDATE checkpoints SET path=? WHERE run_id=? AND epoch=?", (new, row["run_id"], row["epoch"]))


def relative_path(stored: str, run_id: str, home: Path) -> str:
    """A checkpoint path as the store keeps it: relative to its folder.

    An absolute path inside `home` becomes relative; one elsewhere that ends in
    ``checkpoints/<run_id>/<file>.pt`` was written by this store before it was copied or moved, and
    names the same file here. Anything else is returned unchanged, and is never used (see RunStore).
    """
    path = PurePath(stored)
    if not path.is_absolute():
        return stored
    for base in (home, home.resolve()):
        if path.is_relative_to(base):
            return path.relative_to(base).as_posix()
    if len(path.parts) >= 3 and path.parts[-3:-1] == ("checkpoints", run_id) and path.suffix == ".pt":
        return f"checkpoints/{run_id}/{path.name}"
    return stored


def process_start(pid: int) -> int | None:
    """When process `pid` started: field 22 (starttime, clock ticks since boot) of /proc/<pid>/stat.
    None where there is no /proc (not Linux) or no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])  # after "pid (comm)", which may hold spaces: field 3 on
    except (OSError, IndexError, ValueError):
        return None


def alive(pid: int, start: int | None) -> bool:
    """Process `pid` exists and, when its start time was recorded, is the same process."""
    if pid <= 0:  # kill(0) would signal our own process group: never a run's process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now = process_start(pid) if start is not None else None
    return now is None or now == start


def training_elsewhere(run: dict) -> str:
    """Why a running run cannot be resumed, deleted or trained by another process: who trains it, and what to do."""
    return (
        f"run {run['id']} is training in process {run['pid']} on host {run['host']}; stop it there (Ctrl-C or "
        f"`kill {run['pid']}`: it stops resumably), or, if that process is gone, "
        f"`python -m charrnn runs mark-interrupted {run['id']}`"
    )
