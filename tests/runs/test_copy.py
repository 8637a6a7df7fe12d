"""`runs copy`: runs trained in one store, copied whole into another (SQLite to PostgreSQL and back), equal value for
value and byte for byte; copying again changes nothing; a run that trains, or a damaged checkpoint, is never copied;
the CLI's lines never show a password."""

import os
import sqlite3
import subprocess
import sys

import pytest
import sqlalchemy as sa
import torch

from charrnn.cli import main
from charrnn.data import load_corpus
from charrnn.runs.copy import copy_runs
from charrnn.runs.database import ENV, engine
from charrnn.runs.recorder import load_stored, train_recorded
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig

TINY = TrainConfig(num_epochs=2, num_hiddens=16, batch_size=4, num_steps=8, device="cpu")


@pytest.fixture(scope="module")
def text():
    return load_corpus(b"the time traveller, for so it will be convenient to speak of him " * 20, mode="raw")


@pytest.fixture
def source(tmp_path, text):
    """A SQLite store holding two finished runs, a checkpoint per epoch."""
    store = RunStore(tmp_path / "source")
    for name in ("first", "second"):
        train_recorded(store, text, TINY, checkpoint_every=1, name=name)
    return store


@pytest.fixture
def database(postgres_cluster, request):
    """A new, empty PostgreSQL database of this test's own."""
    return postgres_cluster.database(request.node.name.lower().replace("[", "_").replace("]", "")[:60])


def contents(store: RunStore) -> list:
    """Everything a store says about its runs: rows, curves and checkpoints' hashes."""
    runs = store.runs()
    curves = [store.history(r["id"]) for r in runs]
    return [runs, curves, [[(c["epoch"], c["sha256"]) for c in store.checkpoints(r["id"])] for r in runs]]


def dump(store: RunStore) -> list[str]:
    db = sqlite3.connect(store.path)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def ids(report: dict, outcome: str) -> set[str]:
    return {r["id"] for r in report[outcome]}


def test_runs_go_to_postgres_and_back_equal_and_their_checkpoints_load(source, database, tmp_path):
    server, back = RunStore(tmp_path / "server", database), RunStore(tmp_path / "back")
    every = {r["id"] for r in source.runs()}
    assert ids(copy_runs(source, server), "copied") == every
    assert ids(copy_runs(server, back), "copied") == every
    assert contents(server) == contents(source) and contents(back) == contents(source)
    assert all(r["status"] == "finished" for r in back.runs())
    run_id = source.runs()[0]["id"]
    model, _, _ = load_stored(back, run_id, 2)
    original, _, _ = load_stored(source, run_id, 2)
    for (name, tensor), (_, expected) in zip(model.state_dict().items(), original.state_dict().items(), strict=True):
        assert torch.equal(tensor, expected), name
    report = copy_runs(source, server)  # floats through PostgreSQL came back exactly: nothing differs
    assert report["copied"] == [] and ids(report, "there") == every


def test_a_second_copy_changes_nothing(source, tmp_path):
    target = RunStore(tmp_path / "target")
    first = copy_runs(source, target)
    assert sorted(r["checkpoints"] for r in first["copied"]) == [2, 2]
    before = dump(target)
    again = copy_runs(source, target)
    assert again["copied"] == [] and again["skipped"] == [] and ids(again, "there") == ids(first, "copied")
    assert dump(target) == before


def test_a_run_trained_further_in_the_source_is_brought_level(source, database, tmp_path, text):
    server = RunStore(tmp_path / "server", database)
    copy_runs(source, server)
    run_id, other = (r["id"] for r in source.runs())
    train_recorded(source, text, TINY, resume=run_id, num_epochs=4, checkpoint_every=1)
    report = copy_runs(source, server)
    assert ids(report, "copied") == {run_id} and ids(report, "there") == {other}
    assert [e["epoch"] for e in server.history(run_id)] == [1, 2, 3, 4]
    assert contents(server) == contents(source)
    assert load_stored(server, run_id, 4)[2]["epoch"] == 4


def test_a_run_trained_further_in_the_target_is_not_thrown_away(source, tmp_path, text):
    target = RunStore(tmp_path / "target")
    copy_runs(source, target)
    run_id = source.runs()[0]["id"]
    train_recorded(target, text, TINY, resume=run_id, num_epochs=3, checkpoint_every=1)
    before = dump(target)
    (skipped,) = copy_runs(source, target)["skipped"]
    assert skipped["id"] == run_id and "copy it the other way" in skipped["why"]
    assert dump(target) == before


def test_named_runs_unknown_or_training_and_the_same_store_are_refused(source, tmp_path, text):
    target = RunStore(tmp_path / "target")
    with pytest.raises(ValueError, match=r"no run with id 'abc123'.*`python -m charrnn runs`"):
        copy_runs(source, target, ["abc123"])
    training = source.create_run(TINY, text.fingerprint(), "cpu", name="training")  # as a run starts: this process
    with pytest.raises(ValueError, match=rf"run {training} is training in .*stop it first"):
        copy_runs(source, target, [training])
    for same in (RunStore(source.home), RunStore(tmp_path / "elsewhere", f"sqlite:///{source.path}")):
        with pytest.raises(ValueError, match=r"cannot copy the run store .* to itself"):
            copy_runs(source, same)
    assert target.runs() == []
    report = copy_runs(source, target)  # all runs: the training one is left out, and says why
    (skipped,) = report["skipped"]
    assert skipped["id"] == training and "training" in skipped["why"] and len(report["copied"]) == 2
    assert {r["status"] for r in target.runs()} == {"finished"}


def test_a_run_training_in_the_target_is_never_overwritten(source, tmp_path, text):
    target = RunStore(tmp_path / "target")
    copy_runs(source, target)
    run_id = source.runs()[0]["id"]
    train_recorded(source, text, TINY, resume=run_id, num_epochs=3, checkpoint_every=1)
    target.resume_run(run_id, from_epoch=2)  # this process now trains it there
    before = dump(target)
    (skipped,) = copy_runs(source, target, [run_id])["skipped"]
    assert skipped["id"] == run_id and "never overwritten" in skipped["why"]
    assert dump(target) == before


def test_a_damaged_checkpoint_refuses_its_run_naming_the_epoch(source, tmp_path):
    run_id, other = (r["id"] for r in source.runs())
    with engine(source.url).begin() as db:
        damage = sa.text("UPDATE checkpoints SET data=:data WHERE run_id=:id AND epoch=2")  # the hash kept as it was
        db.execute(damage, {"data": b"x", "id": run_id})
    target = RunStore(tmp_path / "target")
    report = copy_runs(source, target)
    (skipped,) = report["skipped"]
    assert skipped["id"] == run_id and f"run {run_id}'s checkpoint of epoch 2 is damaged" in skipped["why"]
    assert [r["id"] for r in target.runs()] == [other]


def charrnn(home, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != ENV} | {"CHARRNN_HOME": str(home)}
    cmd = [sys.executable, "-m", "charrnn", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def test_the_cli_copies_to_and_from_a_server_without_showing_its_password(source, database, tmp_path):
    url = database.replace("postgres@", "postgres:hunter2@")  # trust authentication: any password logs in
    to = charrnn(source.home, "runs", "copy", "--to", url)
    assert to.returncode == 0, to.stderr
    assert "copied 2 runs (4 epochs, 4 checkpoints) to postgresql+psycopg://postgres:***@" in to.stdout
    assert "hunter2" not in to.stdout + to.stderr
    run_id = source.runs()[0]["id"]
    back = charrnn(tmp_path / "fresh", "runs", "copy", "--from", url, run_id)
    assert back.returncode == 0, back.stderr
    assert back.stdout.startswith(f"copied run {run_id} (") and "hunter2" not in back.stdout + back.stderr
    assert [r["id"] for r in RunStore(tmp_path / "fresh").runs()] == [run_id]


def test_the_cli_names_the_flag_of_a_server_it_cannot_reach(source):
    proc = charrnn(source.home, "runs", "copy", "--to", "postgresql+psycopg://u:secret@127.0.0.1:1/x")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "--to" in proc.stderr and "cannot be reached" in proc.stderr
    assert "secret" not in proc.stderr and "u:***@127.0.0.1:1/x" in proc.stderr


def test_copy_needs_exactly_one_of_to_and_from(capsys):
    for argv in (["runs", "copy"], ["runs", "copy", "--to", "sqlite:///a", "--from", "sqlite:///b"]):
        with pytest.raises(SystemExit, match="2"):
            main(argv)
        assert "--to" in capsys.readouterr().err
