"""The run store on a real PostgreSQL server (issue 23, a throwaway cluster: tests/pg.py): machines with their
own CHARRNN_HOME share its runs and curves; a database that is not ours, or a server that cannot be reached, is
one line that never shows the password."""

import functools
import json
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa
from alembic import command
from test_tune import TINY as TUNE_TINY
from test_tune import parse

from charrnn.cli import main, tune
from charrnn.data import load_corpus
from charrnn.runs import recorder, schema, spool
from charrnn.runs.database import ENV, StoreUnreachable, engine, store_url
from charrnn.runs.recorder import train_recorded
from charrnn.runs.spool import Outbox
from charrnn.runs.store import RunStore, StoreError
from charrnn.train import TrainConfig

TINY = ["--num-hiddens", "16", "--max-tokens", "2000", "--batch-size", "4", "--num-steps", "8", "--device", "cpu"]


@pytest.fixture
def database(postgres_cluster, request):
    """A new, empty database of this test's own."""
    return postgres_cluster.database(request.node.name.lower().replace("[", "_").replace("]", "")[:60])


def test_two_homes_share_one_postgres_store(database, tmp_path, monkeypatch, capsys, time_machine_path):
    monkeypatch.setenv(ENV, database)  # restored after the test: `--database` sets it for the process
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "a"))
    monkeypatch.delenv(ENV)
    assert main(["train", *TINY, "--epochs", "3", "--eval-every", "1", "--database", database]) == 0
    capsys.readouterr()
    here, there = RunStore(tmp_path / "a", database), RunStore(tmp_path / "b", database)  # two machines' homes
    assert not (tmp_path / "a" / "runs.sqlite").exists() and not (tmp_path / "b" / "runs.sqlite").exists()
    (run,) = there.runs()
    assert run == here.runs()[0] and run["status"] == "finished" and run["epochs"] == 3
    assert there.history(run["id"]) == here.history(run["id"]) and run["best_val_perplexity"] is not None
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "b"))
    assert main(["runs", "--json", "--database", database]) == 0
    assert run["id"] in capsys.readouterr().out


def test_a_resumed_run_writes_its_epochs_again_on_the_server(database, tmp_path, time_machine_path):
    store = RunStore(tmp_path / "home", database)
    text = load_corpus("time_machine", max_tokens=2000, download=False)
    config = TrainConfig(num_epochs=2, num_hiddens=16, batch_size=4, num_steps=8, device="cpu")
    run_id, _ = train_recorded(store, text, config, checkpoint_every=1)
    store.finish(run_id, "stopped")
    train_recorded(store, text, config, resume=run_id, num_epochs=4, checkpoint_every=1)
    assert [e["epoch"] for e in store.history(run_id)] == [1, 2, 3, 4] and store.run(run_id)["status"] == "finished"
    assert [c["epoch"] for c in store.checkpoints(run_id)] == [1, 2, 3, 4]


def test_a_second_upgrade_is_a_no_op_and_optunas_tables_may_share_the_database(database, tmp_path):
    RunStore(tmp_path / "home", database)
    url = store_url(tmp_path, database)
    with engine(url).connect() as db:
        db.execute(sa.text("CREATE TABLE alembic_version (version_num TEXT)"))  # as Optuna's storage makes one
        db.execute(sa.text("INSERT INTO alembic_version VALUES ('v3.2.0.a')"))
        db.commit()
        tables = sorted(sa.inspect(db).get_table_names())
    config = schema.alembic_config()
    with engine(url).begin() as db:
        config.attributes.update(connection=db, home=tmp_path)
        command.upgrade(config, "head")
    with engine(url).connect() as db:
        assert sorted(sa.inspect(db).get_table_names()) == tables
        assert db.execute(sa.text(f"SELECT version_num FROM {schema.VERSION_TABLE}")).scalar() == schema.head()
        assert db.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "v3.2.0.a"
    assert RunStore(tmp_path / "other", database).runs() == []


def test_a_foreign_runs_table_is_refused_and_left_as_it_was(database, tmp_path):
    url = store_url(tmp_path, database)
    with engine(url).begin() as db:
        db.execute(sa.text("CREATE TABLE runs (x INTEGER)"))
    with pytest.raises(StoreError, match=r"is not a charrnn run store") as e:
        RunStore(tmp_path, database)
    assert "postgresql" in str(e.value)
    with engine(url).connect() as db:
        assert sorted(sa.inspect(db).get_table_names()) == ["runs"]


def test_a_server_that_cannot_be_reached_is_one_line_without_the_password(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(ENV, "")  # restored after: the flag sets it
    url = "postgresql://charrnn:s3cret-pw@127.0.0.1:9/runs"  # port 9 (discard): nothing listens
    with pytest.raises(StoreError, match=r"cannot be reached") as e:
        RunStore(tmp_path, url)
    assert "s3cret-pw" not in str(e.value) and "charrnn:***@127.0.0.1:9/runs" in str(e.value)
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path))
    assert main(["runs", "--database", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "s3cret-pw" not in err and "***" in err and "Traceback" not in err
    with pytest.raises(SystemExit, match="2"):  # argparse's own exit: the flag's type refused it
        main(["runs", "--database", "mysql://charrnn:s3cret-pw@host/runs"])
    err = capsys.readouterr().err
    assert "--database" in err and "s3cret-pw" not in err and "PostgreSQL or SQLite" in err


def test_tune_defaults_to_the_run_stores_server_in_a_schema_of_its_own(database, tmp_path, monkeypatch, capsys):
    """No --storage: the studies go beside the runs, Optuna's tables in schema optuna; the trial's run is a run
    of the shared store, tagged with its study."""
    monkeypatch.setenv(ENV, database)
    monkeypatch.delenv("CHARRNN_TUNE_STORAGE", raising=False)
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    argv = ["--study", "shared", "--trials", "1", "--epochs", "1", "--json", "--space", "lr=0.5:2:log", *TUNE_TINY]
    assert tune.run(parse(*argv)) == 0
    (trial,) = json.loads(capsys.readouterr().out)["trials"]
    (run,) = RunStore(tmp_path / "elsewhere", database).runs()
    assert (run["study"], run["trial"], run["status"]) == ("shared", trial["number"], "finished")
    with engine(store_url(tmp_path, database)).connect() as db:
        public = set(sa.inspect(db).get_table_names())
        optuna_tables = set(sa.inspect(db).get_table_names(schema="optuna"))
    assert {"runs", "epochs", "checkpoints", "owners", "charrnn_version"} == public
    assert {"studies", "trials", "alembic_version"} <= optuna_tables


def started(run, seen: list) -> threading.Thread:
    """`run` in a thread, once its training has recorded 3 epochs in `seen`."""
    trainer = threading.Thread(target=run)
    trainer.start()
    deadline = time.monotonic() + 60
    while len(seen) < 3:
        assert trainer.is_alive() and time.monotonic() < deadline
        time.sleep(0.05)
    return trainer


def test_a_run_trains_through_a_server_restart_and_loses_no_epoch(postgres_cluster, tmp_path, time_machine_path):
    url = postgres_cluster.database("restart")
    store = RunStore(tmp_path / "home", url)
    text = load_corpus("time_machine", max_tokens=2000, download=False)
    seen, done = [], {}
    config = TrainConfig(num_epochs=150, num_hiddens=16, batch_size=4, num_steps=8, device="cpu")

    def run():
        done["result"] = train_recorded(store, text, config, on_epoch=seen.append, checkpoint_every=10)

    trainer = started(run, seen)
    postgres_cluster.restart()  # immediate stop (as a crash), then start again: seconds without a server
    at_restart = len(seen)
    trainer.join(timeout=120)
    assert not trainer.is_alive()
    run_id, result = done["result"]
    assert len(seen) == 150 and at_restart < 150  # it trained on, and it trained while the server was away
    history = RunStore(tmp_path / "other", url).history(run_id)
    assert [e["epoch"] for e in history] == list(range(1, 151))
    assert [e["perplexity"] for e in history] == pytest.approx([s.perplexity for s in result.history])
    assert store.run(run_id)["status"] == "finished"
    assert [c["epoch"] for c in store.checkpoints(run_id)] == list(range(10, 151, 10))


def test_a_server_away_past_the_limit_leaves_the_run_resumable_from_what_it_kept_on_disk(
    postgres_cluster, tmp_path, monkeypatch, time_machine_path
):
    """The run ends (here after 3 s, 5 min in use): the epochs and checkpoints that did not reach the database are
    written to the run's folder on its machine; the next open there, once its process is gone, reads them in
    (checkpoints checked by SHA-256), removes the files, and the run resumes from its last epoch."""
    url = postgres_cluster.database("away")
    home = tmp_path / "home"
    store = RunStore(home, url)
    text = load_corpus("time_machine", max_tokens=2000, download=False)
    config = TrainConfig(num_epochs=100000, num_hiddens=16, batch_size=4, num_steps=8, device="cpu")
    monkeypatch.setattr(recorder, "Outbox", functools.partial(Outbox, limit=3.0))
    seen, ended = [], {}

    def run():
        try:
            train_recorded(store, text, config, on_epoch=seen.append, checkpoint_every=1)
        except StoreUnreachable as e:
            ended["error"] = str(e)

    trainer = started(run, seen)
    postgres_cluster.halt()
    try:
        trainer.join(timeout=120)
        assert not trainer.is_alive()
    finally:
        postgres_cluster.resume()
    (run_id,) = {p.name for p in (home / "checkpoints").iterdir()}
    folder = home / "checkpoints" / run_id
    assert f"kept in {folder}" in ended["error"] and f"--resume {run_id}" in ended["error"]
    kept = sorted(int(p.stem.removeprefix("epoch-")) for p in folder.glob("epoch-*.pt"))
    trained = kept[-1]  # the last epoch seen, or one more whose checkpoint (not its callback) met the limit
    assert seen[-1].epoch <= trained <= seen[-1].epoch + 1 and (folder / spool.EPOCHS).is_file()
    assert len(store.history(run_id)) < trained  # the server has only what came before it went away

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with engine(store.url).begin() as db:  # as if the training process had exited, as `train` does on this error
        db.execute(
            sa.text("UPDATE runs SET pid=:pid, pid_start=NULL WHERE id=:id"), {"pid": int(dead.stdout), "id": run_id}
        )
    reopened = RunStore(home, url)
    run = reopened.run(run_id)
    assert run["status"] == "interrupted" and "recovered" in run["reason"]
    epochs = [e["epoch"] for e in reopened.history(run_id)]  # and the one whose record met the limit
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) >= trained
    assert reopened.last_checkpoint(run_id)["epoch"] == trained and not folder.exists()
    _, result = train_recorded(reopened, text, config, resume=run_id, num_epochs=trained + 2)
    assert [s.epoch for s in result.history][-2:] == [trained + 1, trained + 2]
