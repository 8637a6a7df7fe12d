"""Alembic migrations of the run store (issue 23): a store written by each earlier release (tests/runs/fixtures)
upgrades in place, in one transaction, and opens with its runs intact; a second `alembic upgrade` is a no-op."""

import hashlib
import sqlite3
from contextlib import closing
from pathlib import Path

import alembic.op
import pytest
from alembic import command

from charrnn.runs import schema
from charrnn.runs.database import engine
from charrnn.runs.recorder import load_stored
from charrnn.runs.store import RunStore

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("store-*.sql"))


def dump(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as db:
        return list(db.iterdump())


def rows(path: Path, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_a_store_of_every_earlier_release_upgrades_in_place_and_opens(fixture, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    path = home / "runs.sqlite"
    with closing(sqlite3.connect(path)) as db:
        db.executescript(fixture.read_text())
    ((run_id, name),) = rows(path, "SELECT id, name FROM runs")
    curve = rows(path, "SELECT epoch, perplexity, loss FROM epochs ORDER BY epoch")
    files = checkpoint_files(home, run_id, fixture)

    store = RunStore(home)
    (run,) = store.runs()
    assert (run["id"], run["name"], run["status"], run["epochs"]) == (run_id, name, "finished", 2)
    assert [(e["epoch"], e["perplexity"], e["loss"]) for e in store.history(run_id)] == curve
    assert rows(path, f"SELECT version_num FROM {schema.VERSION_TABLE}") == [(schema.head(),)]
    # each checkpoint file (named by an absolute path in the first release) moved into its row, then removed
    assert rows(path, "SELECT epoch, data, sha256, size FROM checkpoints ORDER BY epoch") == [
        (n, data, hashlib.sha256(data).hexdigest(), len(data)) for n, data in files.items()
    ]
    assert not (home / "checkpoints" / run_id).exists()
    if fixture.with_name(f"{fixture.stem}-checkpoints").is_dir():  # a real checkpoint of that release loads
        model, vocab, ckpt = load_stored(store, run_id, 2)
        assert ckpt["epoch"] == 2 and len(vocab) == model.config.vocab_size
    for table, needed in {"runs": {"pid_start", "study", "trial"}, "epochs": {"val_perplexity", "val_points"}}.items():
        assert needed <= {r[1] for r in rows(path, f"PRAGMA table_info({table})")}
    store.add_epoch(run_id, {"epoch": 3, "perplexity": 9.0, "val_perplexity": 8.0, "val_points": [(2.5, 8.5)]})
    assert store.history(run_id)[-1]["val_points"] == [(2.5, 8.5)] and store.runs()[0]["best_val_perplexity"] == 8.0

    before = dump(path)
    config = schema.alembic_config()
    with engine(store.url).begin() as db:  # alembic upgrade head, once more, as the command line would run it
        config.attributes.update(connection=db, home=home)
        command.upgrade(config, "head")
    assert dump(path) == before


@pytest.mark.parametrize("step", ["0001: paths made relative", "0003: the table renamed"])
def test_a_failed_upgrade_leaves_the_old_store_and_its_files_as_they_were(tmp_path, monkeypatch, step):
    """One transaction: a migration that breaks half-way (in the first revision, after its ALTER TABLEs; or in the
    last step of the one that reads the checkpoint files in) writes nothing and removes no file."""
    home = tmp_path / "home"
    home.mkdir()
    path = home / "runs.sqlite"
    with closing(sqlite3.connect(path)) as db:
        db.executescript(FIXTURES[0].read_text())
    ((run_id,),) = rows(path, "SELECT id FROM runs")
    files = checkpoint_files(home, run_id, FIXTURES[0])
    before = dump(path)

    def broken(*_):
        raise RuntimeError("the disk went away")

    if step.startswith("0001"):
        monkeypatch.setattr(schema, "relative_path", broken)
    else:
        monkeypatch.setattr(alembic.op, "rename_table", broken)
    with pytest.raises(RuntimeError, match="the disk went away"):
        RunStore(home)
    assert dump(path) == before
    assert {n: (home / "checkpoints" / run_id / f"epoch-0000{n}.pt").read_bytes() for n in files} == files
    monkeypatch.undo()
    store = RunStore(home)
    assert store.runs()[0]["epochs"] == 2 and store.checkpoint_bytes(run_id, 2) == files[2]


def checkpoint_files(home: Path, run_id: str, fixture: Path) -> dict[int, bytes]:
    """The two checkpoint files a fixture's rows name, in the store's folder: the release's own files where they
    were kept (``store-<release>-checkpoints/``), else bytes of their own."""
    folder, kept = home / "checkpoints" / run_id, fixture.with_name(f"{fixture.stem}-checkpoints")
    folder.mkdir(parents=True)
    files = {n: f"checkpoint {n} of {run_id}".encode() for n in (1, 2)}
    if kept.is_dir():
        files = {n: (kept / f"epoch-0000{n}.pt").read_bytes() for n in (1, 2)}
    for n, data in files.items():
        (folder / f"epoch-0000{n}.pt").write_bytes(data)
    return files
