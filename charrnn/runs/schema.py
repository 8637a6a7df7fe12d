"""The run store's schema and its migrations (Alembic: charrnn/runs/migrations), the checks made when a store
is opened, and whether a run's process lives.

Opening never changes a database it does not recognise: a damaged or foreign ``runs.sqlite``, or a
database whose runs/epochs/checkpoints tables belong to another program, is refused with a StoreError
before anything is written to it. A store written by an older version, with or without Alembic's
version table, is brought up to date in one transaction, one process at a time (SQLite's write lock,
PostgreSQL's advisory lock); a store already at the newest revision is only read.
"""

import os
import sqlite3
import time
from functools import lru_cache
from pathlib import Path, PurePath

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from charrnn.runs import paths
from charrnn.runs.database import StoreError, StoreUnreachable, engine, is_sqlite, masked

SQLITE_HEADER = b"SQLite format 3\x00"
MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "charrnn_version"  # as migrations/env.py names it: Optuna's alembic_version may share the database
MIGRATION_LOCK = 0x63686172726E6E  # "charrnn": PostgreSQL's advisory lock key while a store is migrated
# What a table must have to be ours; a table of the same name without these belongs to something else.
REQUIRED = {
    "runs": {"id", "name", "created", "updated", "config", "corpus", "status", "pid"},
    "epochs": {"run_id", "epoch", "perplexity"},
    "checkpoints": {"run_id", "epoch", "created"},
}

CHECKPOINT_FACTS = "run_id, epoch, sha256, size, created"  # a checkpoint's row without its bytes
EPOCH_FIELDS = (
    "epoch", "perplexity", "tokens_per_sec", "grad_norm", "clipped", "elapsed", "loss", "sample", "val_perplexity",
    "val_points",
)  # fmt: skip
# One epoch's row, written again when a resumed run trains the epoch again (SQLite and PostgreSQL both say it so).
UPSERT_EPOCH = (
    f"INSERT INTO epochs (run_id, {', '.join(EPOCH_FIELDS)}) "
    f"VALUES (:run_id, {', '.join(':' + f for f in EPOCH_FIELDS)}) "
    f"ON CONFLICT (run_id, epoch) DO UPDATE SET {', '.join(f'{f}=excluded.{f}' for f in EPOCH_FIELDS[1:])}"
)
RUNS_QUERY = """
    SELECT r.*, COUNT(e.epoch) AS epochs, MIN(e.perplexity) AS best_perplexity,
           (SELECT who FROM owners WHERE run_id=r.id) AS owner,
           (SELECT perplexity FROM epochs WHERE run_id=r.id ORDER BY epoch DESC LIMIT 1) AS final_perplexity,
           (SELECT tokens_per_sec FROM epochs WHERE run_id=r.id ORDER BY epoch DESC LIMIT 1) AS tokens_per_sec,
           MAX(e.elapsed) AS duration, MIN(e.val_perplexity) AS best_val_perplexity,
           (SELECT val_perplexity FROM epochs WHERE run_id=r.id AND val_perplexity IS NOT NULL
            ORDER BY epoch DESC LIMIT 1) AS final_val_perplexity,
           (SELECT epoch FROM epochs WHERE run_id=r.id AND val_perplexity IS NOT NULL
            ORDER BY val_perplexity, epoch LIMIT 1) AS best_val_epoch
    FROM runs r LEFT JOIN epochs e ON e.run_id = r.id {where} GROUP BY r.id ORDER BY r.created DESC"""


def not_a_store(path) -> StoreError:
    """`path`: the SQLite file, or a server's URL without its password."""
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


def open_store(home: Path, url: sa.URL) -> None:
    """Create or update the store at `url` (by default its SQLite file in `home`); StoreError when it cannot be
    used, naming it (a URL without its password) and the fix."""
    sqlite = is_sqlite(url)
    where = Path(url.database) if sqlite else masked(url)
    if sqlite:
        try:
            home.mkdir(parents=True, exist_ok=True)
            where.parent.mkdir(parents=True, exist_ok=True)  # a file named by CHARRNN_DATABASE_URL may be elsewhere
        except OSError as e:
            raise unusable_home(home if where.parent == home else where.parent, e) from e
        _check_header(home, where)
    try:
        with engine(url).connect() as db:
            _check_tables(db, where, sqlite)  # before any write: a foreign database is left exactly as it was
            current = _version(db)
            db.rollback()
        if sqlite:
            _use_wal(url)
        if current != head():  # most opens write nothing, so many readers never queue for the lock
            migrate(url, home)
    except sa.exc.DBAPIError as e:
        raise as_store_error(e, home, url) or not_a_store(where) from e


def migrate(url: sa.URL, home: Path) -> None:
    """Bring the store up to Alembic's head in one transaction, one process at a time (two processes opening an
    old store migrate it one after the other; the second finds it done)."""
    options = {"sqlite_begin": "IMMEDIATE"} if is_sqlite(url) else {}
    config = alembic_config()
    with engine(url).connect().execution_options(**options) as db, db.begin():
        if not is_sqlite(url):
            db.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        if _version(db) == head():
            return
        config.attributes.update(connection=db, home=home)
        command.upgrade(config, "head")
    for path in config.attributes.get("moved", ()):  # checkpoint files now in the database, read back and verified
        path.unlink(missing_ok=True)
        paths.remove_if_empty(path.parent)


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@lru_cache(maxsize=1)
def head() -> str:
    """The newest revision of the store's schema (read from the migrations once per process)."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _version(db) -> str | None:
    """The store's Alembic revision; None for a new database or a store written before Alembic."""
    if VERSION_TABLE not in sa.inspect(db).get_table_names():
        return None
    return db.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


# SQLite's error names (their prefixes: extended codes such as SQLITE_IOERR_WRITE share them) that say the
# file is damaged or not a database, and those that say the folder or disk cannot be used.
DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
UNUSABLE = ("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_PERM", "SQLITE_BUSY")


def as_store_error(e: Exception, home: Path, url: sa.URL) -> StoreError | None:
    """The StoreError a user should see for the database error `e` (SQLAlchemy's, or the driver's own); None for
    any other error (a bug, not the database)."""
    orig = getattr(e, "orig", None) or e
    if isinstance(orig, sqlite3.Error):
        name = getattr(orig, "sqlite_errorname", None) or ""
        if name.startswith(DAMAGED) or type(orig) is sqlite3.DatabaseError:
            return not_a_store(Path(url.database))
        if name.startswith(UNUSABLE):
            return unusable_home(home, orig)
        return None
    if isinstance(e, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        reason = " ".join(str(orig).split())
        if url.password:
            reason = reason.replace(str(url.password), "***")
        return StoreUnreachable(
            f"the run store at {masked(url)} cannot be reached ({reason[:200]}); check the server, the URL and "
            "its password (CHARRNN_DATABASE_URL or --database)"
        )
    return None


def _use_wal(url: sa.URL, tries: int = 200) -> None:
    """Switch the file to WAL (it stays so). When two processes switch a new store at once, SQLite answers
    the second "locked" at once, skipping the busy timeout so as not to deadlock: it waits and tries again.
    Outside any transaction (SQLite refuses the switch inside one): on the driver's own connection."""
    raw = engine(url).raw_connection()
    try:
        for attempt in range(tries):
            try:
                raw.driver_connection.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if attempt == tries - 1 or not (getattr(e, "sqlite_errorname", None) or "").startswith("SQLITE_BUSY"):
                    raise sa.exc.OperationalError("PRAGMA journal_mode=WAL", None, e) from e
                time.sleep(0.05)
    finally:
        raw.close()


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


def _check_tables(db, where, sqlite: bool) -> None:
    """A database that holds tables of ours' names without our columns, or (a SQLite file, which is the store's
    alone) tables but no runs table, belongs to another program."""
    inspector = sa.inspect(db)
    tables = set(inspector.get_table_names())
    if sqlite and tables and "runs" not in tables:
        raise not_a_store(where)
    for table, needed in REQUIRED.items():
        if table in tables and not needed <= {c["name"] for c in inspector.get_columns(table)}:
            raise not_a_store(where)


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
