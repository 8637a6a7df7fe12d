"""Whose runs (demo mode's visitors, charrnn.runs.demo) live in the run store's database (issue 23): a visitor keeps
their runs on every app server that shares it, and the ``visitors.sqlite`` file of an earlier release is read in."""

import sqlite3
from contextlib import closing

from charrnn.runs import demo
from charrnn.runs.database import ENV
from charrnn.runs.store import RunStore


def old_visitors(home, rows) -> None:
    """The file an earlier release kept beside the store, as its own code made it."""
    home.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(home / "visitors.sqlite")) as db, db:
        db.execute("CREATE TABLE IF NOT EXISTS owners (run_id TEXT PRIMARY KEY, key_hash TEXT NOT NULL)")
        db.executemany("INSERT INTO owners VALUES (?, ?)", rows)


def test_a_visitors_runs_are_theirs_on_every_server_that_shares_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, f"sqlite:///{tmp_path / 'shared.sqlite'}")
    a, b = RunStore(tmp_path / "a"), RunStore(tmp_path / "b")
    mine, theirs = (a.create_run({}, {}, "cpu") for _ in range(2))
    assert demo.claim(mine, "my-key", a.home) and demo.claim(theirs, "their-key", a.home)
    assert demo.claim(mine, "their-key", b.home)  # written, but a later claim never takes a run over
    assert demo.owned("my-key", b.home) == {mine} and demo.owned("their-key", b.home) == {theirs}
    b.finish(mine, "finished")
    b.delete(mine)
    assert demo.owned("my-key", a.home) == {mine}  # a deleted run stays its visitor's (ids are never reused)
    assert not (tmp_path / "a" / "visitors.sqlite").exists() and not (tmp_path / "b" / "visitors.sqlite").exists()
    with closing(sqlite3.connect(tmp_path / "shared.sqlite")) as db:  # only the key's hash is written
        assert "my-key" not in str(db.execute("SELECT * FROM owners").fetchall())


def test_an_earlier_releases_visitors_file_is_read_in_and_removed(tmp_path):
    home = tmp_path / "home"
    old_visitors(home, [("abc123", demo.key_hash("k1")), ("def456", demo.key_hash("k1")), ("0f", demo.key_hash("k2"))])
    RunStore(home).claim("def456", demo.key_hash("k2"))  # opening read the file in first: k1's claim stands
    assert demo.owned("k1", home) == {"abc123", "def456"} and demo.owned("k2", home) == {"0f"}
    assert not (home / "visitors.sqlite").exists()
    old_visitors(home, [("abc123", demo.key_hash("k3")), ("../x", "evil"), ("777", demo.key_hash("k3"))])
    assert demo.owned("k3", home) == {"777"}  # a run already claimed stays its owner's; a bad id is dropped


def test_a_damaged_visitors_file_is_left_as_it_was(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "visitors.sqlite").write_bytes(b"not a database at all")
    store = RunStore(home)
    assert store.owned(demo.key_hash("k")) == frozenset()
    assert (home / "visitors.sqlite").read_bytes() == b"not a database at all"
