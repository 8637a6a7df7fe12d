"""Stop from any machine (issue 23): `runs stop RUN_ID` asks through the database, and the process training the
run, on another machine (another CHARRNN_HOME here), stops it at a minibatch boundary within seconds, resumably.
On a shared SQLite file and on a PostgreSQL server."""

import time

import pytest
from streamlit.testing.v1 import AppTest
from support import APP, cli_train

from charrnn.cli import main
from charrnn.runs.database import ENV
from charrnn.runs.store import STOP_POLL, RunStore

TINY = ["--num-hiddens", "16", "--max-tokens", "2000", "--batch-size", "4", "--num-steps", "8", "--device", "cpu"]


@pytest.fixture(params=["sqlite", "postgresql"])
def shared(request, tmp_path):
    """The URL of a database two machines share."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.sqlite'}"
    return request.getfixturevalue("postgres_cluster").database(f"stop_{tmp_path.name[-20:].lower()}")


def test_a_run_stops_when_asked_from_another_machine(shared, tmp_path, monkeypatch, capsys, time_machine_path):
    monkeypatch.setenv(ENV, shared)  # both "machines": their own homes, one database
    proc = cli_train(tmp_path / "a", *TINY, "--epochs", "100000", "--checkpoint-every", "1")
    try:
        there = RunStore(tmp_path / "b")
        deadline = time.monotonic() + 120
        while not (there.runs() and there.runs()[0]["epochs"] >= 2):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the run never reached epoch 2"
            time.sleep(0.2)
        run_id = there.runs()[0]["id"]
        monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "b"))
        asked = time.monotonic()
        assert main(["runs", "stop", run_id]) == 0
        assert f"asked run {run_id} to stop" in capsys.readouterr().out
        assert proc.wait(timeout=30) == 0, proc.stderr.read()  # a run that ended as asked
        assert time.monotonic() - asked < STOP_POLL + 10
    finally:
        proc.kill()
    run = there.run(run_id)
    assert run["status"] == "stopped" and "stopped from the run store" in run["reason"]
    assert run["stop_asked"] is None  # asked once: a resumed run trains on
    assert RunStore(tmp_path / "a").last_checkpoint(run_id) is not None  # resumable where it trained
    assert main(["runs", "stop", run_id]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"run {run_id} is not running (it is stopped)" in err


def test_the_runs_page_stops_a_run_trained_by_another_process(tmp_path, monkeypatch, fresh_caches, time_machine_path):
    monkeypatch.setenv(ENV, f"sqlite:///{tmp_path / 'shared.sqlite'}")
    proc = cli_train(tmp_path / "a", *TINY, "--epochs", "100000", "--checkpoint-every", "1")
    try:
        store = RunStore(tmp_path / "b")
        deadline = time.monotonic() + 120
        while not store.runs():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
        run_id = store.runs()[0]["id"]
        monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "b"))
        at = AppTest.from_file(APP, default_timeout=30).run()
        at.switch_page("pages/runs.py").run()
        at.selectbox(key="runs_one").set_value(run_id).run()
        at.button(key="runs_stop").click().run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        assert at.button(key="runs_stop").disabled  # asked: the page says so until the run ends
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        proc.kill()
    assert store.run(run_id)["status"] == "stopped"
