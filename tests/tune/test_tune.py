"""charrnn tune: the grid, joining a study, several workers on one SQLite study, a killed worker, pruning, Stop.

Trials are tiny (hidden 16, 2,000 chars, batch 4, steps 8, a few epochs, 200 held-out chars evaluated
every epoch): a trial is mostly its training process starting (a few seconds on 2 CPU cores).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from stored import stored_checkpoint

from charrnn.cli import tune
from charrnn.runs.store import RunStore
from charrnn.tune.space import FieldError
from charrnn.tune.storage import open_storage

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--num-hiddens", "16", "--max-tokens", "2000", "--batch-size", "4", "--num-steps", "8"]
TINY += ["--val-tokens", "200", "--eval-every", "1", "--device", "cpu"]
SPACE = "lr=0.5:4:log,num_hiddens=8|16,clip=0.5:2:log"


class ArgumentParser(argparse.ArgumentParser):
    """As the CLI's: a bad flag ends with one line and status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse(*argv: str):
    parser = ArgumentParser(prog=tune.PROG)
    tune.add_arguments(parser)
    return parser.parse_args(list(argv))


WORKER = """import sys
from charrnn.cli import tune
from test_tune import parse
sys.exit(tune.run(parse(*sys.argv[1:])))
"""


def worker(home, storage: str, *argv: str, trials: int = 6, epochs: int = 2, **popen) -> subprocess.Popen:
    """A tune worker in its own process, as `python -m charrnn tune` runs it (JSON at the end)."""
    args = ["--storage", storage, "--trials", str(trials), "--epochs", str(epochs), "--json", *TINY, *argv]
    env = {
        **os.environ,
        "CHARRNN_HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "tune")]),
    }
    cmd = [sys.executable, "-c", WORKER, *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def finish(proc: subprocess.Popen, timeout: float = 300) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    return json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in strict JSON"))


def load(storage: str, study: str) -> optuna.Study:
    return optuna.load_study(study_name=study, storage=open_storage(storage))


def check_trials_and_runs(study: optuna.Study, home, expected: int):
    """`expected` distinct trials, none left running, each (but a killed one) a run tagged with it."""
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(expected))
    assert not [t for t in trials if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)]
    runs = {r["id"]: r for r in RunStore(home).runs()}
    ids = [t.user_attrs["run_id"] for t in trials if t.state != optuna.trial.TrialState.FAIL]
    assert len(set(ids)) == len(ids) and set(ids) <= set(runs)
    for t in trials:
        if t.state != optuna.trial.TrialState.FAIL:
            run = runs[t.user_attrs["run_id"]]
            assert (run["study"], run["trial"]) == (study.study_name, t.number)
            assert run["name"] == f"{study.study_name} trial {t.number}"
            assert run["status"] == {"COMPLETE": "finished", "PRUNED": "pruned"}.get(t.state.name, run["status"])
    return trials


def wait_for_epochs(home, epochs: int = 1, poll: float = 0.3, timeout: float = 120) -> None:
    """Until a run of `home`'s store has recorded `epochs` epochs; fails after `timeout` seconds (a test that went
    on regardless would fail later, saying something else)."""
    deadline = time.monotonic() + timeout
    while not [r for r in RunStore(home).runs() if r["epochs"] >= epochs]:
        assert time.monotonic() < deadline, f"no run in {home} recorded {epochs} epochs in {timeout} s"
        time.sleep(poll)


def wait_for_runs(storage: str, study: str, n: int, timeout: float = 60):
    """Until `n` trials of the study have their run in the store."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        try:
            if sum(bool(t.user_attrs.get("run_id")) for t in load(storage, study).trials) >= n:
                return
        except KeyError:  # the study is not created yet
            pass
    raise AssertionError(f"{n} trials did not start in time")


# ---- the grid sampler (the space's own tests: tests/tune/test_space.py) ---------------------------


def test_the_grid_sampler_runs_each_point_once_then_stops(tmp_path, capsys, monkeypatch, time_machine_path):
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    storage = STORE.format(tmp=tmp_path)
    argv = ["--study", "grid", "--storage", storage, "--trials", "5", "--epochs", "1", "--json"]
    assert tune.run(parse(*argv, "--space", "num_hiddens=8|16", "--sampler", "grid", *TINY)) == 0
    trials = json.loads(capsys.readouterr().out)["trials"]
    assert sorted(t["params"]["num_hiddens"] for t in trials) == [8, 16]  # 2 points: 2 trials, not 5


# ---- joining a study (bad input: tests/tune/test_tune_inputs.py) ---------------------------------

STORE = "sqlite:///{tmp}/t.sqlite"


def test_a_study_from_before_cells_and_layers_is_joined_as_the_rnn_it_trained(tmp_path, monkeypatch, time_machine_path):
    """A study stored before cell, num_layers and dropout existed trained the one-layer rnn: a worker
    with those settings joins it; one with another cell is refused, naming it."""
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    argv = ["--study", "old", "--storage", STORE.format(tmp=tmp_path), *TINY]
    study = tune.prepare(parse(*argv)).study
    settings = study.user_attrs["charrnn"]
    for name in ("cell", "num_layers", "dropout"):
        del settings["fixed"][name]
    study.set_user_attr("charrnn", settings)
    assert tune.prepare(parse(*argv)).study.study_name == "old"
    with pytest.raises(FieldError, match="cell 'gru', not 'rnn'"):
        tune.prepare(parse(*argv, "--cell", "gru"))


# ---- studies -----------------------------------------------------------------------------------


def test_one_worker_over_cells_and_layers_prints_each_trial_a_table_and_records_each_model(
    tmp_path, capsys, monkeypatch, time_machine_path
):
    """Three trials of a space with cell and num_layers (dropout fixed): a line each, the table with the
    best marked, and each trial's run and checkpoint hold the cell and layers it was given."""
    home = tmp_path / "home"
    monkeypatch.setenv("CHARRNN_HOME", str(home))
    storage = STORE.format(tmp=tmp_path)
    space = f"{SPACE},cell=rnn|gru|lstm,num_layers=1:2"
    argv = ["--study", "one", "--storage", storage, "--trials", "3", "--epochs", "2", "--space", space]
    assert tune.run(parse(*argv, "--sampler", "random", "--seed", "1", "--dropout", "0.2", *TINY)) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in out[:3]] == [["trial", "0"], ["trial", "1"], ["trial", "2"]]
    assert out[3].startswith(f"study 'one' in {storage}: 3 trials")
    assert {"cell", "num_layers"} <= set(out[4].split())
    study = load(storage, "one")
    best = study.best_trial.number
    marked = [line for line in out[5:8] if line.startswith("*")]
    assert len(marked) == 1 and marked[0].split()[1] == str(best)
    assert out[-2].startswith(f"best (*): trial {best}, held-out perplexity {study.best_value:.3f}")
    assert out[-1].startswith("5-gram (counting): ") and out[-1].endswith(" on the same held-out text")
    trials = check_trials_and_runs(study, home, 3)
    assert len({(t.params["cell"], t.params["num_layers"]) for t in trials}) > 1
    store = RunStore(home)
    for t in trials:
        given = (t.params["cell"], t.params["num_layers"], 0.2)
        run = store.run(t.user_attrs["run_id"])
        assert (run["config"]["cell"], run["config"]["num_layers"], run["config"]["dropout"]) == given
        model = stored_checkpoint(store, run["id"])["model_config"]
        assert (model["cell"], model["num_layers"], model["dropout"]) == given  # what it trained


def two_workers(storage: str, home, name: str = "pair", flags=((), ())) -> optuna.Study:
    """Two workers of 6 trials each at once on one study: 12 distinct trials, none lost or doubled,
    each a run of `home`'s store tagged with its study and number. `flags`: each worker's own extra flags."""
    procs = [worker(home, storage, "--study", name, "--space", SPACE, *own) for own in flags]
    reports = [finish(p) for p in procs]
    study = load(storage, name)
    trials = check_trials_and_runs(study, home, 12)
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    assert len(RunStore(home).runs()) == 12
    # the worker that finished last saw all 12 finished (the other may have seen the last one still running)
    last = max(reports, key=lambda r: sum(t["state"] in ("COMPLETE", "PRUNED") for t in r["trials"]))
    assert [t["number"] for t in last["trials"]] == list(range(12))
    assert last["best_value"] == pytest.approx(study.best_value) and last["best_params"] == study.best_params
    return study


def test_two_workers_share_one_sqlite_study(tmp_path, time_machine_path):
    two_workers(STORE.format(tmp=tmp_path), tmp_path / "home")


def test_a_killed_worker_trial_fails_by_heartbeat_and_is_retried(tmp_path, time_machine_path):
    """Heartbeats every second: 3 s after its worker died, the next worker to start a trial fails it."""
    storage, home = STORE.format(tmp=tmp_path), tmp_path / "home"
    argv = ["--study", "kill", "--space", SPACE, "--heartbeat", "1", "--pruner", "none"]
    doomed = worker(home, storage, *argv, trials=3, epochs=20)
    wait_for_runs(storage, "kill", 1)  # its first trial trains
    survivor = worker(home, storage, *argv, trials=3, epochs=20)
    assert load(storage, "kill").trials[0].state.name == "RUNNING"
    doomed.send_signal(signal.SIGKILL)  # in the middle of trial 0, while the survivor starts
    doomed.communicate()
    finish(survivor)
    trials = check_trials_and_runs(load(storage, "kill"), home, 4)
    killed = trials[0]
    assert killed.state.name == "FAIL"
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retry) == 1 and retry[0].params == killed.params and retry[0].state.name == "COMPLETE"
    assert {t.state.name for t in trials[1:]} == {"COMPLETE"}
    (run,) = [r for r in RunStore(home).runs() if r["trial"] == 0 and r["id"] == killed.user_attrs["run_id"]]
    # Its training process ended with its worker: stopped at the next minibatch, or failed writing to the
    # dead worker (charrnn.runs.worker), never left "running".
    assert run["status"] in ("stopped", "interrupted", "failed")


def test_the_median_pruner_ends_a_bad_trial_early(tmp_path, capsys, monkeypatch, time_machine_path):
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    storage = STORE.format(tmp=tmp_path)
    argv = ["--study", "prune", "--storage", storage, "--trials", "6", "--epochs", "5", "--json"]
    argv += ["--space", "lr=0.5:50:log", "--sampler", "random", "--seed", "3"]
    # 10,000 chars (156 minibatches): an epoch lasts long enough for the pruner's answer to stop the next one
    assert tune.run(parse(*argv, *TINY, "--max-tokens", "10000", "--batch-size", "8")) == 0
    report = json.loads(capsys.readouterr().out)
    pruned = [t for t in report["trials"] if t["state"] == "PRUNED"]
    assert any(t["epochs"] < 5 for t in pruned), report["trials"]
    assert all(t["value"] is None for t in pruned)  # a pruned trial has no value, only a reason
    study = load(storage, "prune")
    early = [t for t in study.trials if t.state.name == "PRUNED" and t.user_attrs["epochs"] < 5]
    assert any(t.user_attrs["reason"].startswith("pruned by the median pruner at epoch") for t in early)
    check_trials_and_runs(study, tmp_path / "home", 6)


def test_a_worker_with_another_space_cannot_join(tmp_path, capsys, monkeypatch, time_machine_path):
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    storage = STORE.format(tmp=tmp_path)
    assert tune.run(parse("--study", "j", "--storage", storage, "--trials", "1", "--epochs", "1", *TINY)) == 0
    capsys.readouterr()
    argv = ["--study", "j", "--storage", storage, "--trials", "1", "--epochs", "1", "--space", "lr=1:2"]
    assert tune.run(parse(*argv, *TINY)) == 2
    err = capsys.readouterr().err
    assert "--study: study 'j' already exists with other settings (space lr=1:2, not lr=0.25:4:log," in err
    assert err.count("\n") == 1
    argv = ["--study", "j", "--storage", storage, "--trials", "1", "--epochs", "2"]
    assert tune.run(parse(*argv, *TINY)) == 2
    assert "(num_epochs 2, not 1; predict_every 2, not 1)" in capsys.readouterr().err


def test_ctrl_c_ends_the_trial_marks_it_stopped_and_prints_the_table(tmp_path, time_machine_path):
    """Ctrl-C in a terminal reaches the whole process group: the worker and its training process."""
    storage, home = STORE.format(tmp=tmp_path), tmp_path / "home"
    proc = worker(home, storage, "--study", "stop", "--space", SPACE, trials=3, epochs=100_000, start_new_session=True)
    wait_for_epochs(home)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "stopping after this trial's epoch" in err
    (trial,) = load(storage, "stop").trials
    assert trial.state.name == "FAIL" and trial.user_attrs["stopped"] == "stopped by the user"
    (run,) = RunStore(home).runs()
    assert run["status"] == "stopped" and 1 <= run["epochs"] < 100_000
    assert json.loads(out)["trials"][0]["state"] == "FAIL"
