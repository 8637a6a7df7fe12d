"""A run store that loses nothing and says clearly what is wrong: copied, moved, old, damaged, foreign,
unwritable, or holding a run whose process id was reused."""

import hashlib
import multiprocessing
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from charrnn.data import load_corpus
from charrnn.runs.recorder import load_stored, train_recorded
from charrnn.runs.store import RunStore, StoreError, process_start
from charrnn.train import TrainConfig

TINY = TrainConfig(num_epochs=2, num_hiddens=16, batch_size=4, num_steps=8, device="cpu")
FIX = "set CHARRNN_HOME to a writable folder"
# The schema as the first release wrote it: no pid_start, no val_perplexity, absolute checkpoint paths.
OLD_SCHEMA = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
    config TEXT NOT NULL, corpus TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    device TEXT NOT NULL DEFAULT '', host TEXT NOT NULL DEFAULT '', pid INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE epochs (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, epoch INTEGER NOT NULL,
    perplexity REAL, tokens_per_sec REAL, grad_norm REAL, clipped REAL, elapsed REAL, loss REAL,
    sample TEXT, PRIMARY KEY (run_id, epoch)
);
CREATE TABLE checkpoints (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, epoch INTEGER NOT NULL,
    path TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (run_id, epoch)
);
"""


@pytest.fixture(scope="module")
def text():
    return load_corpus(b"the time traveller, for so it will be convenient to speak of him " * 20, mode="raw")


def ckpt_files(home: Path, run_id: str) -> list[Path]:
    return sorted((home / "checkpoints" / run_id).glob("epoch-*.pt"))


def test_a_copied_store_deletes_only_its_own_checkpoints_and_a_moved_one_keeps_them(tmp_path, text):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    run_id, _ = train_recorded(RunStore(a), text, TINY, checkpoint_every=1)
    assert ckpt_files(a, run_id) == []  # checkpoints are in the database, not beside it
    originals = [(ck["epoch"], ck["sha256"]) for ck in RunStore(a).checkpoints(run_id)]
    assert [epoch for epoch, _ in originals] == [1, 2]
    shutil.copytree(a, b)
    copy = RunStore(b)
    copy.delete(run_id)
    assert copy.runs() == [] and copy.checkpoints(run_id) == []
    assert [(ck["epoch"], ck["sha256"]) for ck in RunStore(a).checkpoints(run_id)] == originals

    shutil.move(a, c)
    moved = RunStore(c)
    assert moved.last_checkpoint(run_id)["epoch"] == 2
    model, _, ckpt = load_stored(moved, run_id, 2)
    assert ckpt["epoch"] == 2 and model.config.num_hiddens == TINY.num_hiddens


def old_store(home: Path, rows: list[tuple[int, str]], run_id="abc123", pid=0, status="finished") -> None:
    """A store as the old code wrote it: one run with an epoch and a checkpoint row per (epoch, path)."""
    home.mkdir(parents=True)
    with sqlite3.connect(home / "runs.sqlite") as db:
        db.executescript(OLD_SCHEMA)
        db.execute(
            "INSERT INTO runs (id, name, created, updated, config, corpus, status, host, pid) "
            "VALUES (?, 'old', 1, 1, '{}', '{}', ?, ?, ?)",
            (run_id, status, socket.gethostname(), pid),
        )
        for epoch, path in rows:
            db.execute("INSERT INTO epochs (run_id, epoch, perplexity) VALUES (?, ?, 3.0)", (run_id, epoch))
            db.execute("INSERT INTO checkpoints VALUES (?, ?, ?, 1)", (run_id, epoch, path))
    db.close()


def test_an_old_store_with_absolute_paths_is_migrated_and_never_reaches_outside(tmp_path):
    """Rows written before paths were relative, in a store that was then copied: epoch 1 names the
    original's file, epoch 2 this home's own, epoch 3 a file that belongs to no store. The migration into the
    database reads this home's two files (and removes them), and never reads or removes the others."""
    original, home, outside = tmp_path / "original", tmp_path / "home", tmp_path / "outside" / "secret.pt"
    outside.parent.mkdir()
    outside.write_bytes(b"not the store's")
    folder = home / "checkpoints" / "abc123"
    rows = [(1, str(original / folder.relative_to(home) / "epoch-00001.pt")), (2, str(folder / "epoch-00002.pt"))]
    old_store(home, [*rows, (3, str(outside))])
    for base in (original, home):  # both copies have both files
        (base / folder.relative_to(home)).mkdir(parents=True, exist_ok=True)
        for epoch in (1, 2):
            (base / folder.relative_to(home) / f"epoch-0000{epoch}.pt").write_bytes(f"{base.name} {epoch}".encode())

    store = RunStore(home)
    assert [(ck["epoch"], ck["sha256"]) for ck in store.checkpoints("abc123")] == [
        (epoch, hashlib.sha256(f"home {epoch}".encode()).hexdigest()) for epoch in (1, 2)
    ]  # the outside file's row could never be used: it is dropped, the file left as it was
    assert store.checkpoint_bytes("abc123", 1) == b"home 1" and not folder.exists()
    assert outside.read_bytes() == b"not the store's"
    (run,) = store.runs()
    assert run["epochs"] == 3 and run["best_val_perplexity"] is None and run["final_val_perplexity"] is None
    assert [e["val_perplexity"] for e in store.history("abc123")] == [None] * 3

    store.delete("abc123")
    assert outside.read_bytes() == b"not the store's"
    assert len(list((original / "checkpoints" / "abc123").iterdir())) == 2


def test_symlinks_and_dotdot_never_lead_the_store_outside_its_folder(tmp_path):
    home, outside = tmp_path / "home", tmp_path / "outside"
    outside.mkdir()
    (outside / "epoch-00001.pt").write_bytes(b"precious")
    old_store(home, [(1, "checkpoints/abc123/epoch-00001.pt"), (2, "checkpoints/abc123/../../../outside/x.pt")])
    (home / "checkpoints").mkdir()
    (home / "checkpoints" / "abc123").symlink_to(outside, target_is_directory=True)
    (outside / "x.pt").write_bytes(b"precious")
    store = RunStore(home)  # neither file is read into the store, nor removed by its migration
    assert store.checkpoints("abc123") == [] and store.last_checkpoint("abc123") is None
    assert sorted(p.name for p in outside.iterdir()) == ["epoch-00001.pt", "x.pt"]
    store.delete("abc123")
    assert sorted(p.name for p in outside.iterdir()) == ["epoch-00001.pt", "x.pt"]
    assert [p.read_bytes() for p in sorted(outside.iterdir())] == [b"precious"] * 2


def foreign_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE studies (id INTEGER PRIMARY KEY, name TEXT)")
    db.close()


def other_runs_table(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, started TEXT)")
    db.close()


def big_store(path: Path) -> bytes:
    """A real store of a few pages, all in the main file; returns its bytes."""
    store = RunStore(path.parent)
    for _ in range(40):
        store.create_run({"pad": "x" * 2000}, {}, "cpu")
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return path.read_bytes()


def damaged_store(path: Path) -> None:
    data = bytearray(big_store(path))
    data[4096:12288] = b"\xff" * 8192  # pages after the first: the header still says SQLite
    path.write_bytes(bytes(data))


NOT_A_STORE = [
    ("text", lambda p: p.write_text("these are my notes, not a database\n" * 50)),
    ("binary", lambda p: p.write_bytes(bytes(range(256)) * 16)),
    ("another program's database", foreign_sqlite),
    ("a table named runs of another program", other_runs_table),
    ("a truncated store", lambda p: p.write_bytes(big_store(p)[:5000])),
    ("a store with damaged pages", damaged_store),
]


@pytest.mark.parametrize("kind, make", NOT_A_STORE, ids=[k for k, _ in NOT_A_STORE])
def test_a_file_that_is_not_a_run_store_is_refused_unchanged(tmp_path, kind, make):
    path = tmp_path / "runs.sqlite"
    make(path)
    for side in (tmp_path / "runs.sqlite-wal", tmp_path / "runs.sqlite-shm"):
        side.unlink(missing_ok=True)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    with pytest.raises(StoreError) as e:
        RunStore(tmp_path).runs()
    message = str(e.value)
    assert message.startswith(f"{path} is not a charrnn run store") and "move it aside" in message
    assert "\n" not in message
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def chattr(path: Path, flag: str) -> bool:
    """Make `path` immutable (+i) or not (-i); False where chattr is missing or the file system refuses."""
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


@pytest.fixture
def lock():
    """lock(folder): make it a folder no one, root included, may write into (chattr +i), until the test
    ends; skips the test where that cannot be done (as root, a chmod'ed folder stays writable)."""
    locked = []

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        if not chattr(folder, "+i"):
            pytest.skip("chattr +i is not available here, and as root a chmod'ed folder stays writable")
        locked.append(folder)
        return folder

    yield make
    for folder in locked:
        chattr(folder, "-i")


def test_a_home_that_cannot_hold_a_store_is_named_with_the_fix(tmp_path, lock):
    immutable = lock(tmp_path / "locked")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    (tmp_path / "db-is-a-folder" / "runs.sqlite").mkdir(parents=True)
    cases = {  # home -> the words of the reason
        a_file: "is not a folder",  # FileExistsError
        a_file / "below": "a part of the path is a file",  # NotADirectoryError
        Path("/proc"): "unable to open",  # sqlite3.OperationalError
        Path("/proc/charrnn-test"): "No such file",  # OSError
        immutable: "unable to open",
        immutable / "below": "ermission denied|not permitted",  # PermissionError
    }
    for home, reason in cases.items():
        with pytest.raises(StoreError, match=reason) as e:
            RunStore(home)
        assert str(e.value).startswith(f"{home} cannot hold the run store") and str(e.value).endswith(FIX)
    with pytest.raises(StoreError, match="runs.sqlite is not a charrnn run store"):
        RunStore(tmp_path / "db-is-a-folder")


def test_a_checkpoints_folder_that_cannot_be_written_does_not_stop_training(tmp_path, text):
    """Checkpoints go to the database: the folder beside it (where a run keeps what its database could not take)
    is not needed to train."""
    store = RunStore(tmp_path / "home")
    (store.home / "checkpoints").write_text("a file where the folder should be")
    run_id, _ = train_recorded(store, text, TINY)
    assert store.run(run_id)["status"] == "finished" and store.last_checkpoint(run_id)["epoch"] == 2


def test_a_reused_pid_does_not_keep_a_dead_run_running(tmp_path):
    if process_start(os.getpid()) is None:
        pytest.skip("no /proc/<pid>/stat here: runs are checked by pid alone")
    store = RunStore(tmp_path)
    mine, reused = (store.create_run({}, {}, "cpu") for _ in range(2))
    with sqlite3.connect(store.path) as db:  # as if a process that died had this process's pid
        db.execute("UPDATE runs SET pid_start = pid_start + 1 WHERE id=?", (reused,))
    db.close()
    reopened = RunStore(tmp_path)
    assert reopened.run(mine)["status"] == "running"
    assert reopened.run(reused)["status"] == "interrupted"


def test_an_old_run_without_a_start_time_is_checked_by_pid(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    old_store(tmp_path / "alive", [], pid=os.getpid(), status="running")
    old_store(tmp_path / "dead", [], pid=int(done.stdout), status="running")
    assert RunStore(tmp_path / "alive").run("abc123")["status"] == "running"
    assert RunStore(tmp_path / "dead").run("abc123")["status"] == "interrupted"


def test_mark_stuck_and_delete_of_a_running_run(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run({}, {}, "cpu")  # alive: this process
    with pytest.raises(ValueError, match=f"run {run_id} is training in process .*runs mark-interrupted {run_id}"):
        store.delete(run_id)
    with pytest.raises(ValueError, match=f"run {run_id} is training in process {os.getpid()} on this host"):
        store.mark_stuck(run_id)  # its process lives here: marking it would let a delete pull the run from under it
    with sqlite3.connect(store.path) as db:  # the same run, its process on another machine: only a person can tell
        db.execute("UPDATE runs SET host='elsewhere' WHERE id=?", (run_id,))
    store.mark_stuck(run_id)
    run = store.run(run_id)
    assert run["status"] == "interrupted" and run["reason"] == "marked interrupted by hand"
    with pytest.raises(ValueError, match=f"run {run_id} is not running"):
        store.mark_stuck(run_id)
    store.finish(run_id, "finished")
    with pytest.raises(ValueError, match=f"run {run_id} is not running"):
        store.mark_stuck(run_id)
    with pytest.raises(ValueError, match="no run with id"):
        store.mark_stuck("fedcba")
    store.delete(run_id)
    assert store.runs() == []


def open_in_step(homes: list[Path], barrier, errors) -> None:
    """In a child process: open each store and list its runs, all children together (`barrier`)."""
    for home in homes:
        barrier.wait(timeout=60)
        try:
            RunStore(home).runs()
        except Exception as e:  # noqa: BLE001 -- sent back, so the test fails showing it
            errors.put(f"{type(e).__name__}: {e}")


def test_processes_opening_an_old_store_at_once_all_succeed(tmp_path):
    """Eight processes at once, on fifty stores: converting the file to WAL or migrating it, none is refused."""
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs fork to start the processes at once")
    homes = [tmp_path / str(i) for i in range(50)]
    for home in homes:  # an old store in SQLite's default journal mode, as a copy might be
        old_store(home, [(1, str(home / "checkpoints" / "abc123" / "epoch-00001.pt"))])
        (home / "checkpoints" / "abc123").mkdir(parents=True)
        (home / "checkpoints" / "abc123" / "epoch-00001.pt").write_bytes(home.name.encode())
    ctx = multiprocessing.get_context("fork")
    barrier, errors = ctx.Barrier(8), ctx.SimpleQueue()
    children = [ctx.Process(target=open_in_step, args=(homes, barrier, errors)) for _ in range(8)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
    assert [child.exitcode for child in children] == [0] * 8
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    for home in homes:  # moved into the database once, by whichever process came first
        with sqlite3.connect(home / "runs.sqlite") as db:
            assert db.execute("SELECT epoch, data FROM checkpoints").fetchall() == [(1, home.name.encode())]
        db.close()
        assert not (home / "checkpoints" / "abc123").exists()
