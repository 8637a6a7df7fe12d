"""charrnn.runs.runner: one background run, stop, the shared device lock, failures reported, the store."""

import dataclasses
import os
import signal
import time

import pytest

from charrnn.runs.devicequeue import DeviceQueue
from charrnn.runs.runner import Runner
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig

TINY = dict(num_hiddens=16, batch_size=4, num_steps=8, max_tokens=2000, device="cpu")


def cut(corpus, n: int):
    """The corpus's first n tokens, as `load_corpus(max_tokens=n)` gives them."""
    return dataclasses.replace(corpus, corpus=corpus.corpus[:n], max_tokens=n)


def wait(runner: Runner, timeout: float = 30.0):
    runner.join(timeout)
    assert not runner.running()
    return runner.snapshot()


def test_a_run_reports_every_epoch_and_the_summary(recipe_corpus):
    runner = Runner()
    assert runner.start(cut(recipe_corpus, 2000), TrainConfig(num_epochs=3, **TINY))
    snap = wait(runner)
    assert snap.status == "finished"
    assert [h.epoch for h in snap.history] == [1, 2, 3]
    assert snap.summary.startswith("perplexity ") and snap.summary.endswith("tokens/sec on cpu")
    assert snap.model is not None and snap.vocab is recipe_corpus.vocab


def test_stop_ends_the_run_and_frees_the_device(recipe_corpus):
    lock = DeviceQueue()
    runner = Runner()
    assert runner.start(cut(recipe_corpus, 2000), TrainConfig(num_epochs=100_000, **TINY), device_lock=lock)
    time.sleep(0.3)
    runner.stop()
    snap = wait(runner, 10)
    assert snap.status == "stopped" and len(snap.history) < 100_000
    assert lock.try_acquire("next")


def test_a_busy_device_is_refused_when_not_queueing(recipe_corpus):
    lock = DeviceQueue()
    lock.try_acquire("another session's run")
    runner = Runner()
    assert not runner.start(recipe_corpus, TrainConfig(num_epochs=1, **TINY), device_lock=lock)
    snap = runner.snapshot()
    assert snap.status == "busy" and "Device busy" in snap.message
    assert not runner.running()


def test_queued_runs_start_first_come_first_served_and_a_cancelled_one_leaves(recipe_corpus):
    lock = DeviceQueue()
    lock.try_acquire("another session's run")
    first, second, third = Runner(), Runner(), Runner()
    for r in (first, second, third):
        assert r.start(cut(recipe_corpus, 2000), TrainConfig(num_epochs=2, **TINY), device_lock=lock, queue=True)
    time.sleep(0.2)
    assert [r.snapshot().status for r in (first, second, third)] == ["queued"] * 3
    assert [r.place() for r in (first, second, third)] == [1, 2, 3]
    second.stop()  # Cancel (or a closed tab): out of the line, nothing trained
    assert wait(second).status == "cancelled" and not second.snapshot().history
    assert third.place() == 2
    lock.release()  # the other session's run ends: the first in line starts by itself
    assert wait(first).status == "finished"
    assert wait(third).status == "finished"
    assert first.snapshot().run_id != third.snapshot().run_id
    assert lock.holder() is None and lock.waiting() == []


def test_bad_settings_raise_before_any_thread(recipe_corpus):
    runner = Runner()
    with pytest.raises(ValueError, match="batch_size"):
        runner.start(cut(recipe_corpus, 100), TrainConfig(num_epochs=1, device="cpu"))
    with pytest.raises(ValueError, match="lr"):
        runner.start(recipe_corpus, TrainConfig(lr=-1.0, **TINY))
    assert runner.snapshot().status == "idle"


def test_a_failure_in_the_training_process_is_reported(recipe_corpus, tmp_path):
    lock = DeviceQueue()
    runner = Runner(RunStore(tmp_path / "home"))
    (tmp_path / "home").rename(tmp_path / "moved")
    (tmp_path / "home").write_text("a file where the store's folder should be")
    runner.start(cut(recipe_corpus, 2000), TrainConfig(num_epochs=1, **TINY), device_lock=lock)
    snap = wait(runner)
    assert snap.status == "failed" and "Training failed" in snap.message and "home" in snap.message
    assert lock.try_acquire("next")


def test_a_killed_training_process_is_reported_and_frees_the_device(recipe_corpus, tmp_path):
    lock = DeviceQueue()
    runner = Runner(RunStore(tmp_path))
    runner.start(cut(recipe_corpus, 2000), TrainConfig(num_epochs=100_000, **TINY), device_lock=lock)
    deadline = time.monotonic() + 60
    while not runner.snapshot().history and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(runner.pid, signal.SIGKILL)
    snap = wait(runner)
    assert snap.status == "failed" and "ended unexpectedly" in snap.message
    assert lock.try_acquire("next")
    assert RunStore(tmp_path).runs()[0]["status"] == "interrupted"


def test_a_diverged_run_says_what_to_change(recipe_corpus):
    runner = Runner()
    config = TrainConfig(num_epochs=5, lr=1e6, clip=0.0, **TINY)  # the largest lr: the loss overflows exp()
    runner.start(cut(recipe_corpus, 2000), config)
    snap = wait(runner)
    assert snap.status == "diverged" and len(snap.history) < 5
    assert f"at epoch {snap.history[-1].epoch}" in snap.message and "lower lr" in snap.message


def test_every_run_is_recorded_and_a_stopped_one_resumes(recipe_corpus, tmp_path):
    """The snapshot names the stored run; resuming it continues its curve in the same run."""
    store = RunStore(tmp_path)
    runner = Runner(store)
    assert runner.start(cut(recipe_corpus, 2000), TrainConfig(num_epochs=3, **TINY), checkpoint_every=1)
    snap = wait(runner)
    assert snap.run_id and [h["epoch"] for h in store.history(snap.run_id)] == [1, 2, 3]
    assert store.run(snap.run_id)["status"] == "finished"

    config = TrainConfig(num_epochs=100_000, **TINY)
    assert runner.start(cut(recipe_corpus, 2000), config, checkpoint_every=2)
    while len(runner.snapshot().history) < 3:
        time.sleep(0.05)
    runner.stop()
    first = wait(runner, 10)
    assert first.status == "stopped" and store.run(first.run_id)["status"] == "stopped"
    kept = store.last_checkpoint(first.run_id)["epoch"]

    assert runner.start(cut(recipe_corpus, 2000), config, resume=first.run_id, checkpoint_every=2)
    while len(runner.snapshot().history) < kept + 2:
        time.sleep(0.05)
    runner.stop()
    again = wait(runner, 10)
    assert again.run_id == first.run_id and again.status == "stopped"
    epochs = [h.epoch for h in again.history]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) >= kept + 2  # one curve, no gap
    assert [h["epoch"] for h in store.history(first.run_id)] == epochs
    assert len(store.runs()) == 2


def test_a_worker_whose_app_went_away_stops_quietly_and_keeps_its_run(recipe_corpus, tmp_path):
    """The app's end closes the message pipe: the training process stops at its next minibatch, says
    nothing on stderr (a traceback there once failed a browser test), and the run stays in the store."""
    import pickle

    proc, read_fd = spawn_worker()
    config = TrainConfig(num_epochs=100_000, **TINY)
    job = {
        "home": str(tmp_path),
        "corpus": cut(recipe_corpus, 2000),
        "config": config,
        "options": {"checkpoint_every": 1},
    }
    pickle.dump(job, proc.stdin)
    proc.stdin.close()
    with os.fdopen(read_fd, "rb") as messages:
        assert pickle.load(messages)[0] == "start"
        assert pickle.load(messages)[0] == "epoch"
    proc.wait(timeout=60)  # the reader is gone: the next message breaks the pipe
    err = proc.stderr.read()
    assert proc.returncode == 0 and b"Traceback" not in err, err.decode()
    (run,) = RunStore(tmp_path).runs()
    assert run["status"] == "stopped"


def test_a_worker_that_never_got_its_job_ends_quietly(tmp_path):
    """A server shutting down between starting the training process and sending its job closes its stdin: the
    worker ends at once, with status 0 and nothing on stderr (a traceback there once failed a browser test)."""
    proc, read_fd = spawn_worker()
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""
    with os.fdopen(read_fd, "rb") as messages:
        assert messages.read() == b""  # it said nothing: there was no run


def spawn_worker():
    """The app's training process as the Runner starts it: (the process, the read end of its message pipe)."""
    import subprocess
    import sys

    from charrnn.runs.runner import child_env

    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "charrnn.runs.worker", str(write_fd)],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(write_fd,),
        env=child_env(),
    )
    os.close(write_fd)
    return proc, read_fd
