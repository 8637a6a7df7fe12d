"""`runs copy`: runs, their curves and their checkpoints from one run store into another (a laptop's SQLite file to
the team's PostgreSQL server, and back), so that a run trained anywhere can be compared, sampled and resumed
anywhere else.

A run goes whole or not at all: it is read from one snapshot of the source and written in one transaction of the
target, with the same id and the same values (floats exactly), and each checkpoint's bytes are checked against
their SHA-256 on the way out and read back and checked again on the way in. Copying again changes nothing; a run
that trained on in the source since is brought level (the target's curve and checkpoints of it are replaced).
A run that is training, in either store, is left alone: its rows are still changing, and one that trains is never
overwritten. A copied run keeps its host and pid (they are its history) and its status, which is never "running".
"""

import hashlib
import math
from contextlib import contextmanager

import sqlalchemy as sa

from charrnn.runs.database import Connection, StoreError, engine, is_sqlite
from charrnn.runs.schema import CHECKPOINT_FACTS, as_store_error
from charrnn.runs.store import RunStore

OTHER_FLAGS = "CHARRNN_DATABASE_URL or --database"  # as the store's messages name the URL's flag


class Skip(Exception):
    """Why a run was left as it was in the target (its transaction there is rolled back)."""


def other_store(url: str, flag: str) -> RunStore:
    """The store at `url`, given with `flag` (--to, --from); a store that cannot be used names that flag."""
    try:
        return RunStore(url=url)
    except StoreError as e:
        raise type(e)(f"{flag}: {str(e).replace(OTHER_FLAGS, flag)}") from None


def copy_runs(source: RunStore, target: RunStore, run_ids: list[str] | None = None) -> dict:
    """Copy every run of `source` (or those of `run_ids`) into `target`, ids kept. The report lists the runs
    "copied" (id, name, epochs, checkpoints), already "there", and "skipped" (id, name, why). ValueError, before
    anything is written, for a store copied to itself, an unknown run id, or a named run that is training."""
    if same_store(source, target):
        raise ValueError(f"cannot copy the run store {source.where} to itself; name another store's URL")
    report = {"copied": [], "there": [], "skipped": []}
    for run in _chosen(source, run_ids):
        facts = {"id": run["id"], "name": run["name"]}
        try:
            counts = copy_run(source, target, run["id"])
        except Skip as why:
            report["skipped"].append({**facts, "why": str(why)})
            continue
        report["there" if counts is None else "copied"].append({**facts, **(counts or {})})
    return report


def same_store(a: RunStore, b: RunStore) -> bool:
    """Whether two stores are one database: the same SQLite file however its path is spelled, or the same database
    of the same server whoever logs in."""
    if a.path is not None or b.path is not None:
        return a.path is not None and b.path is not None and a.path.resolve() == b.path.resolve()
    return (a.url.host, a.url.port or 5432, a.url.database) == (b.url.host, b.url.port or 5432, b.url.database)


def _chosen(source: RunStore, run_ids: list[str] | None) -> list[dict]:
    """The runs to copy, oldest first: all of them, or the named ones, each checked to exist and not be training."""
    runs = sorted(source.runs(), key=lambda r: r["created"])
    if run_ids is None:
        return runs
    by_id = {r["id"]: r for r in runs}
    for run_id in run_ids:
        if run_id not in by_id:
            raise ValueError(f"no run with id {run_id!r} in {source.where}; `python -m charrnn runs` lists them")
        if by_id[run_id]["status"] == "running":
            raise ValueError(
                f"run {run_id} is training in {source.where}: stop it first (`python -m charrnn runs stop {run_id}`) "
                "or wait until it ends, then copy it"
            )
    return [by_id[run_id] for run_id in dict.fromkeys(run_ids)]


def copy_run(source: RunStore, target: RunStore, run_id: str) -> dict | None:
    """Copy one run in one transaction of the target: the numbers of epochs and checkpoints copied, or None when the
    target held it as it is. Skip (nothing written) when it trains in either store, is newer in the target, or
    one of its checkpoints is damaged in the source."""
    key = {"id": run_id}
    with _transaction(source) as src, _transaction(target, write=True) as dst:
        run = src.row("SELECT * FROM runs WHERE id=:id", key)
        if run is None:
            raise Skip(f"it was deleted from {source.where} while the runs were copied")
        if run["status"] == "running":
            raise Skip(f"it is training in {source.where}; copy it once it has ended (or stop it first)")
        epochs = src.rows("SELECT * FROM epochs WHERE run_id=:id ORDER BY epoch", key)
        kept = _facts(src, run_id)
        lock = "" if is_sqlite(target.url) else " FOR UPDATE"  # SQLite: the transaction holds the write lock
        there = dst.row(f"SELECT * FROM runs WHERE id=:id{lock}", key)
        if there is not None:
            _check_overwrite(there, run, source, target)
            old = (dst.rows("SELECT * FROM epochs WHERE run_id=:id ORDER BY epoch", key), _facts(dst, run_id))
            if _plain([there, *old[0], *old[1]]) == _plain([run, *epochs, *kept]):
                return None
        _replace(dst, run, epochs)
        for facts in kept:
            _copy_checkpoint(src, dst, facts, source, target)
    return {"epochs": len(epochs), "checkpoints": len(kept)}


def _check_overwrite(there: dict, run: dict, source: RunStore, target: RunStore) -> None:
    """Refuse to overwrite a run that trains in the target, or that changed there after it did in the source (it
    trained on there: copying would throw that away)."""
    if there["status"] == "running":
        raise Skip(f"it is training in {target.where}: a run that trains is never overwritten; copy it when it ends")
    if there["updated"] > run["updated"]:
        raise Skip(
            f"it changed in {target.where} after it did in {source.where} (it trained or ended there later); copy it "
            "the other way, or delete it there first"
        )


def _facts(db: Connection, run_id: str) -> list[dict]:
    return db.rows(f"SELECT {CHECKPOINT_FACTS} FROM checkpoints WHERE run_id=:id ORDER BY epoch", {"id": run_id})


def _plain(rows: list[dict]) -> list[dict]:
    """Rows as compared: NaN as None (SQLite keeps a NaN as NULL, and NaN never equals itself)."""
    return [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()} for row in rows]


def _replace(dst: Connection, run: dict, epochs: list[dict]) -> None:
    """The run's row written over the target's, and the target's curve and checkpoints of it replaced."""
    for table in ("epochs", "checkpoints"):
        dst.execute(f"DELETE FROM {table} WHERE run_id=:id", {"id": run["id"]})
    update = ", ".join(f"{column}=excluded.{column}" for column in run if column != "id")
    dst.execute(f"{_insert('runs', run)} ON CONFLICT (id) DO UPDATE SET {update}", run)
    if epochs:
        dst.db.execute(sa.text(_insert("epochs", epochs[0])), epochs)


def _copy_checkpoint(src: Connection, dst: Connection, facts: dict, source: RunStore, target: RunStore) -> None:
    """One checkpoint's row, its bytes checked against their SHA-256 before they are written and after."""
    key = {"id": facts["run_id"], "epoch": facts["epoch"]}
    where = f"run {key['id']}'s checkpoint of epoch {key['epoch']}"
    row = src.row("SELECT * FROM checkpoints WHERE run_id=:id AND epoch=:epoch", key)
    row["data"] = bytes(row["data"])
    if _sha256(row["data"]) != row["sha256"]:
        raise Skip(f"{where} is damaged in {source.where} (its bytes no longer match their SHA-256); nothing copied")
    dst.execute(_insert("checkpoints", row), row)
    back = dst.execute("SELECT data FROM checkpoints WHERE run_id=:id AND epoch=:epoch", key).scalar_one()
    if _sha256(bytes(back)) != row["sha256"]:
        raise StoreError(f"{where} did not read back from {target.where} as written; nothing of the run was copied")


def _insert(table: str, row: dict) -> str:
    """An INSERT of `row`'s columns (a store's own column names, read from it: never a user's text)."""
    return f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join(':' + column for column in row)})"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextmanager
def _transaction(store: RunStore, write: bool = False):
    """One transaction on `store`. Reads see one snapshot (PostgreSQL: REPEATABLE READ; SQLite: its transaction),
    so a run is never copied half old, half new; a write takes SQLite's write lock at once (a read turned write could
    meet another process's commit and fail). A server that fails is a StoreError naming it."""
    if is_sqlite(store.url):
        options = {"sqlite_begin": "IMMEDIATE"} if write else {}
    else:
        options = {} if write else {"isolation_level": "REPEATABLE READ"}
    try:
        with engine(store.url).connect().execution_options(**options) as db, db.begin():
            yield Connection(db)
    except sa.exc.DBAPIError as e:
        error = as_store_error(e, store.home, store.url)
        if error is None:
            raise
        raise error from e
