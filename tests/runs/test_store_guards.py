"""What a careful user could still lose (issue 21, items 1-4): `--save` onto the run store's own files, onto
another file without --overwrite, two trainers on one run, and marking or deleting a run whose process lives."""

import os
import signal
import time

import pytest
from support import cli_train

from charrnn.cli import main
from charrnn.data import load_corpus
from charrnn.runs.recorder import train_recorded
from charrnn.runs.schema import StoreError
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig

TINY = ["--num-hiddens", "16", "--max-tokens", "2000", "--batch-size", "4", "--num-steps", "8", "--device", "cpu"]
SMALL = {"num_hiddens": 16, "max_tokens": 2000, "batch_size": 4, "num_steps": 8, "device": "cpu"}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def text(time_machine_path):
    return load_corpus("time_machine", "book", 2000)


def cli(capsys, *args) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def refused(code: int, err: str, *needles: str) -> None:
    assert code != 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(n in lines[0] for n in needles), lines[0]


def store_with_a_run(text) -> tuple[RunStore, str]:
    store = RunStore()
    run_id, _ = train_recorded(store, text, TrainConfig(num_epochs=2, **SMALL), checkpoint_every=1)
    return store, run_id


def test_save_never_writes_over_the_run_store(capsys, home, text, tmp_path):
    """The database, its -wal/-shm/-journal files and every checkpoint, also reached through `..` or a symlink."""
    store, run_id = store_with_a_run(text)
    checkpoint = home / "checkpoints" / run_id / "epoch-00002.pt"  # where a run keeps what its database could not take
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(store.checkpoint_bytes(run_id, 2))
    link = tmp_path / "innocent.pt"
    link.symlink_to(store.path)
    before = store.path.read_bytes(), checkpoint.read_bytes()
    targets = [store.path, f"{store.path}-wal", f"{store.path}-shm", f"{store.path}-journal", checkpoint, link]
    targets += [home / "checkpoints" / ".." / "runs.sqlite", home / "checkpoints" / "new.pt"]
    targets += [home / "visitors.sqlite", home / "visitors.sqlite-journal"]  # the demo's owners, even before it exists
    for target in targets:
        code, _, err = cli(capsys, "train", *TINY, "--epochs", "1", "--save", target, "--overwrite")
        refused(code, err, "--save", "run store", str(target))
    assert (store.path.read_bytes(), checkpoint.read_bytes()) == before
    assert [r["id"] for r in RunStore().runs()] == [run_id]  # nothing trained, nothing lost


def test_save_onto_another_file_needs_overwrite(capsys, home, text, tmp_path):
    target = tmp_path / "mine.pt"
    target.write_bytes(b"my own file")
    code, _, err = cli(capsys, "train", *TINY, "--epochs", "1", "--save", target)
    refused(code, err, "--save", "already exists", "--overwrite")
    assert target.read_bytes() == b"my own file"
    code, _, err = cli(capsys, "train", *TINY, "--epochs", "1", "--save", target, "--overwrite")
    assert code == 0, err
    assert target.read_bytes()[:2] == b"PK"  # a checkpoint now, as asked


def test_a_run_has_one_trainer_at_a_time(text, home):
    """The claim is one write transaction: a second resume finds the run taken and is told by whom."""
    store, run_id = store_with_a_run(text)
    store.finish(run_id, "stopped")
    store.resume_run(run_id, 2)
    with pytest.raises(ValueError, match=rf"run {run_id} is training in process {os.getpid()} on host "):
        store.resume_run(run_id, 2)


def test_a_live_trainer_keeps_its_run_from_resume_delete_and_mark_interrupted(capsys, home, text, time_machine_path):
    store, run_id = store_with_a_run(text)
    store.finish(run_id, "stopped")
    proc = cli_train(home, "--resume", run_id, "--epochs", "100000", "--checkpoint-every", "100000")
    try:
        deadline = time.monotonic() + 120
        while len(store.history(run_id)) < 4:  # epochs 1-2 from before, then the resumed process's own
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the resumed run never trained"
            time.sleep(0.2)
        where = f"run {run_id} is training in process {proc.pid} on host "
        refused(*cli(capsys, "train", "--resume", run_id, "--epochs", "100001")[::2], where)
        refused(*cli(capsys, "runs", "delete", run_id)[::2], where)
        refused(*cli(capsys, "runs", "mark-interrupted", run_id)[::2], f"kill {proc.pid}")
        assert store.run(run_id)["status"] == "running" and proc.poll() is None  # the trainer never noticed
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        proc.kill()
    assert store.run(run_id)["status"] == "stopped"
    code, _, err = cli(capsys, "runs", "delete", run_id)
    assert code == 0, err


def test_a_run_deleted_under_a_writer_is_a_store_error_not_sql(text, home):
    store, run_id = store_with_a_run(text)
    store.delete(run_id)
    with pytest.raises(StoreError) as caught:
        store.add_epoch(run_id, {"epoch": 3, "perplexity": 2.0, "tokens_per_sec": 1.0})
    assert "FOREIGN KEY" not in str(caught.value) and "no longer holds a run" in str(caught.value)
