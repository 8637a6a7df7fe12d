"""charrnn tune --parallel K: trials asked K at a time and trained batched, each still a trial and a run
of its own that computes what it would alone; pruning inside a group, Ctrl-C, a killed worker, bad input.

Trials are tiny (test_tune's TINY: hidden 16, 2,000 chars, batch 4, steps 8, 200 held-out chars).
"""

import json
import os
import signal
import statistics
import time

import optuna
import pytest
from test_tune import SPACE, STORE, TINY, check_trials_and_runs, finish, load, parse, wait_for_epochs, worker

import charrnn.tune.batched
from charrnn.cli import tune
from charrnn.data import load_corpus, split_heldout
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig, train

TS = optuna.trial.TrialState


def check_as_alone(store: RunStore, run: dict) -> None:
    """The run's recorded epochs equal its own config trained alone by `charrnn.train.train` on the
    same text, epoch by epoch: training perplexity and held-out perplexity within 1e-5."""
    corpus = load_corpus("time_machine", "book", run["config"]["max_tokens"], download=False)
    split = split_heldout(corpus, run["config"]["val_tokens"])
    recorded = store.history(run["id"])
    config = TrainConfig.from_dict({**run["config"], "num_epochs": len(recorded)})  # a pruned run: its epochs
    single = train(split.train, corpus.vocab, config, val=split.val).history
    assert [e["epoch"] for e in recorded] == [s.epoch for s in single]
    for got, want in zip(recorded, single, strict=True):
        assert got["perplexity"] == pytest.approx(want.perplexity, rel=1e-5)
        assert got["val_perplexity"] == pytest.approx(want.val_perplexity, rel=1e-5)


def check_checkpoint(store: RunStore, run: dict) -> None:
    """Each member is checkpointed at its last epoch, as a run trained alone would be."""
    last = store.last_checkpoint(run["id"])
    assert last is not None and last["epoch"] == run["epochs"], run


def test_parallel_trials_are_trials_and_runs_of_their_own_each_as_if_alone(tmp_path, monkeypatch, capsys):
    """8 trials, 4 at a time, over two shapes (num_hiddens 8 and 16: two groups per batch)."""
    home = tmp_path / "home"
    monkeypatch.setenv("CHARRNN_HOME", str(home))
    storage = STORE.format(tmp=tmp_path)
    argv = ["--study", "par", "--storage", storage, "--trials", "8", "--epochs", "3", "--space", SPACE]
    argv += ["--parallel", "4", "--pruner", "none", "--sampler", "random", "--seed", "2", "--json"]
    assert tune.run(parse(*argv, *TINY)) == 0
    report = json.loads(capsys.readouterr().out)
    study = load(storage, "par")
    trials = check_trials_and_runs(study, home, 8)
    assert {t.state for t in trials} == {TS.COMPLETE}
    assert {t.params["num_hiddens"] for t in trials} == {8, 16}
    store = RunStore(home)
    runs = {r["id"]: r for r in store.runs()}
    for t in trials:
        run = runs[t.user_attrs["run_id"]]
        assert {k: run["config"][k] for k in t.params} == t.params  # the run trained the trial's point
        assert run["epochs"] == t.user_attrs["epochs"] == 3
        vals = [e["val_perplexity"] for e in store.history(run["id"])]
        assert t.value == pytest.approx(min(vals))  # the trial's value: its best held-out perplexity
        check_checkpoint(store, run)
    assert report["best_value"] == pytest.approx(study.best_value)
    for t in (trials[0], next(t for t in trials if t.params["num_hiddens"] != trials[0].params["num_hiddens"])):
        check_as_alone(store, runs[t.user_attrs["run_id"]])


def test_a_pruned_member_leaves_its_group_and_the_others_go_on_unchanged(tmp_path, monkeypatch, capsys):
    """A first batch of 4 completes (the median pruner needs 2 finished trials). Then a batch holding
    a hopeless lr (0.01) and a copy of the best trial: the hopeless one is pruned early, the copy is
    not (it equals the best at every epoch) and still computes exactly what it would alone."""
    home = tmp_path / "home"
    monkeypatch.setenv("CHARRNN_HOME", str(home))
    storage = STORE.format(tmp=tmp_path)
    argv = ["--study", "prune", "--storage", storage, "--trials", "4", "--epochs", "5", "--parallel", "4"]
    argv += ["--space", "lr=0.01:4:log", "--sampler", "random", "--seed", "0", "--json"]
    argv += [*TINY, "--max-tokens", "4000"]
    assert tune.run(parse(*argv)) == 0
    capsys.readouterr()
    study = load(storage, "prune")
    first = study.trials
    assert {t.state for t in first} == {TS.COMPLETE}

    def median(epoch):
        return statistics.median(t.intermediate_values[epoch] for t in first)

    # a trial never worse than the median at any epoch: the pruner cannot end a copy of it
    steady = [t for t in first if all(v <= median(e) for e, v in t.intermediate_values.items())]
    assert steady, [t.intermediate_values for t in first]
    best = steady[0]
    study.enqueue_trial({"lr": 0.01})
    study.enqueue_trial(best.params)
    assert tune.run(parse(*argv)) == 0
    capsys.readouterr()
    study = load(storage, "prune")
    trials = check_trials_and_runs(study, home, 8)
    hopeless = next(t for t in trials[4:] if t.params["lr"] == 0.01)
    copy = next(t for t in trials[4:] if t.params == best.params)
    assert hopeless.state == TS.PRUNED and hopeless.user_attrs["epochs"] < 5
    assert hopeless.user_attrs["reason"].startswith("pruned by the median pruner at epoch")
    store = RunStore(home)
    runs = {r["id"]: r for r in store.runs()}
    gone = runs[hopeless.user_attrs["run_id"]]
    assert gone["status"] == "pruned" and gone["epochs"] == hopeless.user_attrs["epochs"]
    check_checkpoint(store, gone)
    assert copy.state == TS.COMPLETE and copy.value == pytest.approx(best.value, rel=1e-5)
    check_as_alone(store, runs[copy.user_attrs["run_id"]])


def test_ctrl_c_stops_every_member_after_its_epoch(tmp_path):
    """The worker trains the group itself: Ctrl-C ends all members at the epoch's end, each a stopped
    trial (FAIL, user attr "stopped") and a stopped run with its checkpoint, and exits 130."""
    storage, home = STORE.format(tmp=tmp_path), tmp_path / "home"
    argv = ["--study", "stop", "--space", "lr=0.5:4:log", "--parallel", "3"]
    proc = worker(home, storage, *argv, trials=3, epochs=100_000, start_new_session=True)
    wait_for_epochs(home, 2)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "stopping after this trial's epoch" in err
    trials = load(storage, "stop").trials
    assert len(trials) == 3
    assert all(t.state == TS.FAIL and t.user_attrs["stopped"] == "stopped by the user" for t in trials)
    store = RunStore(home)
    runs = store.runs()
    assert len(runs) == 3 and {r["status"] for r in runs} == {"stopped"}
    assert len({r["epochs"] for r in runs}) == 1 and 2 <= runs[0]["epochs"] < 100_000  # one group: one epoch count
    for run in runs:
        check_checkpoint(store, run)
    assert [t["state"] for t in json.loads(out)["trials"]] == ["FAIL"] * 3


def test_a_second_ctrl_c_quits_at_once_failing_the_group_and_marking_its_runs_interrupted(tmp_path):
    """The whole text at hidden 512: an epoch lasts seconds, so both signals, sent right after an epoch is
    recorded (the second once the worker said it got the first), land inside the next one even on a loaded
    machine (at hidden 256 an epoch ended between them once in CI, and the group stopped gracefully)."""
    storage, home = STORE.format(tmp=tmp_path), tmp_path / "home"
    argv = ["--study", "quit", "--space", "lr=0.5:2:log", "--parallel", "2", "--max-tokens", "0"]
    proc = worker(home, storage, *argv, "--num-hiddens", "512", trials=2, epochs=1000, start_new_session=True)
    wait_for_epochs(home, poll=0.05)
    os.killpg(proc.pid, signal.SIGINT)
    said = []  # the second only once the first was handled: two signals pending at once are one
    while not (said and said[-1].startswith("stopping after")) and (line := proc.stderr.readline()):
        said.append(line)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    # read through the same text stream: communicate() reads the raw pipe and loses what readline buffered
    proc.stdout.read()
    err = "".join(said) + proc.stderr.read()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.rstrip().endswith("interrupted"), err
    trials = load(storage, "quit").trials
    assert [t.state for t in trials] == [TS.FAIL, TS.FAIL]
    assert {t.user_attrs["reason"] for t in trials} == {"interrupted (Ctrl-C) during an epoch"}
    runs = {r["id"]: r for r in RunStore(home).runs()}
    for t in trials:
        run = runs[t.user_attrs["run_id"]]
        assert run["status"] == "interrupted" and run["epochs"] == t.user_attrs["epochs"] >= 1


def test_a_killed_parallel_worker_trials_fail_by_heartbeat_and_are_retried(tmp_path):
    """Each member keeps its own heartbeat: 3 s after its worker died, both of its trials are failed by
    the next worker and retried with their own parameters; the dead worker's runs become interrupted."""
    storage, home = STORE.format(tmp=tmp_path), tmp_path / "home"
    argv = ["--study", "kill", "--space", "lr=0.5:4:log", "--heartbeat", "1", "--pruner", "none", "--parallel", "2"]
    doomed = worker(home, storage, *argv, trials=2, epochs=200)
    wait_for_epochs(home)
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate()
    killed = load(storage, "kill").trials
    assert [t.state for t in killed] == [TS.RUNNING] * 2
    time.sleep(3.5)  # three missed heartbeats
    finish(worker(home, storage, *argv, trials=2, epochs=200))
    trials = load(storage, "kill").trials
    assert [t.state for t in trials] == [TS.FAIL, TS.FAIL, TS.COMPLETE, TS.COMPLETE]
    retried = {t.system_attrs.get("failed_trial"): t.params for t in trials[2:]}
    assert retried == {0: trials[0].params, 1: trials[1].params}
    dead = {t.user_attrs["run_id"] for t in trials[:2]}
    assert {r["status"] for r in RunStore(home).runs() if r["id"] in dead} == {"interrupted"}


BAD = [
    (["--parallel", "2", "--model", "concise"], "--parallel: trials train batched only with the scratch model"),
    (["--parallel", "2", "--space", "lr=1:2,model=scratch|concise"], "--parallel: trials train batched only"),
    (["--parallel", "2", "--cell", "lstm"], "--parallel: trials train batched only as the rnn cell"),
    (["--parallel", "2", "--space", "cell=rnn|gru"], "--parallel: trials train batched only as the rnn cell"),
    (["--parallel", "2", "--num-layers", "2"], "--parallel: trials train batched only with one layer"),
    (["--parallel", "2", "--space", "num_layers=1:2"], "--parallel: trials train batched only with one layer"),
    (["--parallel", "2", "--dropout", "0.1"], "--parallel: trials train batched only without dropout"),
    (["--parallel", "2", "--space", "lr=1:2,dropout=0:0.3"], "--parallel: trials train batched only without dropout"),
    (["--parallel", "2", "--optimizer", "adam"], "--parallel: trials train batched only by sgd (no batched Adam)"),
    (["--parallel", "2", "--space", "optimizer=sgd|adam,lr_sgd=1:2,lr_adam=0.001:0.01"], "only by sgd"),
    (["--parallel", "2", "--weight-decay", "0.01"], "--parallel: trials train batched only without weight decay"),
    (["--parallel", "2", "--space", "weight_decay=0.001:0.1"], "--parallel: trials train batched only without weight"),
]


@pytest.mark.parametrize(("argv", "message"), BAD)
def test_a_parallel_search_that_cannot_batch_is_refused_naming_the_flag(argv, message, tmp_path, capsys):
    """Only the one-layer scratch rnn without dropout trains batched: anything else the space or the
    fixed settings can give is refused before the study exists."""
    args = parse("--study", "s", "--storage", STORE.format(tmp=tmp_path), "--trials", "1", *TINY, *argv)
    assert tune.run(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert "or --parallel 1" in err and not (tmp_path / "t.sqlite").exists()


def test_k_trials_that_would_not_fit_together_are_refused_before_any_trial(tmp_path, capsys, monkeypatch):
    """One trial of the largest shape fits (the real check of the space passes); 64 at once would not
    fit in a device with 4 GiB free (the free memory the batched check reads is set here)."""
    monkeypatch.setattr(charrnn.tune.batched, "free_bytes", lambda device: 4 * 2**30)
    storage = STORE.format(tmp=tmp_path)
    argv = ["--study", "big", "--storage", storage, "--space", "num_hiddens=512|2048", *TINY, "--parallel", "64"]
    assert tune.run(parse(*argv, "--batch-size", "64")) == 2
    err = capsys.readouterr().err
    assert "--parallel: 64 trials of num_hiddens 2048 trained together need about" in err, err
    assert "train fewer at once" in err and err.count("\n") == 1
    assert not (tmp_path / "t.sqlite").exists() or not load(storage, "big").trials


@pytest.mark.parametrize("value", ["0", "65", "two"])
def test_parallel_takes_1_to_64(value, capsys):
    with pytest.raises(SystemExit) as e:
        parse("--study", "s", "--parallel", value)
    assert e.value.code == 2 and "--parallel" in capsys.readouterr().err


def test_the_grid_sampler_asked_k_at_a_time_runs_each_point_once_then_stops(tmp_path, monkeypatch, capsys):
    """2 x 3 points asked 4 at a time: 6 trials, one per point (the grid sampler's Study.stop() at the
    last point, which Optuna refuses outside optimize(), ends nothing badly); a second worker asks none."""
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    storage = STORE.format(tmp=tmp_path)
    argv = ["--study", "grid", "--storage", storage, "--trials", "10", "--epochs", "1", "--parallel", "4"]
    argv += ["--space", "num_hiddens=8|16,lr=0.5:2", "--sampler", "grid", "--json", *TINY]
    for _ in range(2):
        assert tune.run(parse(*argv)) == 0
        trials = json.loads(capsys.readouterr().out)["trials"]
        assert sorted((t["params"]["num_hiddens"], t["params"]["lr"]) for t in trials) == [
            (h, lr) for h in (8, 16) for lr in (0.5, 1.25, 2.0)
        ]
        assert {t["state"] for t in trials} == {"COMPLETE"}


def test_a_diverged_member_is_pruned_and_checkpointed_at_its_last_finite_epoch(tmp_path, monkeypatch, capsys):
    """lr 300 unclipped diverges in epoch 2 here (hidden 48, the recipe's batch on 3,381 chars); lr 0.5
    beside it in the same group completes."""
    home = tmp_path / "home"
    monkeypatch.setenv("CHARRNN_HOME", str(home))
    argv = ["--study", "div", "--storage", STORE.format(tmp=tmp_path), "--trials", "2", "--epochs", "4"]
    argv += ["--max-tokens", "3381", "--val-tokens", "200", "--eval-every", "1", "--num-hiddens", "48"]
    argv += ["--clip", "0", "--space", "lr=300|0.5", "--sampler", "grid", "--parallel", "2", "--json"]
    assert tune.run(parse(*argv)) == 0
    trials = {t["params"]["lr"]: t for t in json.loads(capsys.readouterr().out)["trials"]}
    bad, good = trials[300], trials[0.5]
    assert good["state"] == "COMPLETE" and bad["state"] == "PRUNED" and bad["epochs"] == 2
    store = RunStore(home)
    run = next(r for r in store.runs() if r["id"] == bad["run_id"])
    assert run["status"] == "diverged" and run["reason"] == "the perplexity became infinite in epoch 2"
    assert store.last_checkpoint(run["id"])["epoch"] == 1
