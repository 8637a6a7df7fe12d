"""The run store: records that survive restarts, kills and concurrent writers; resume."""

import signal
import threading
import time
from dataclasses import asdict

import pytest
from support import cli_train

from charrnn.data import load_corpus
from charrnn.generate import predict
from charrnn.runs.checkpoint import CheckpointError, save_checkpoint
from charrnn.runs.recorder import load_stored, train_recorded
from charrnn.runs.store import RunStore
from charrnn.train import EpochStats, TrainConfig, build_model

SMALL = {"num_hiddens": 32, "device": "cpu", "predict_every": 5}


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "home")


@pytest.fixture(scope="module")
def short_text(recipe_corpus):
    return load_corpus("time_machine", max_tokens=3000, download=False)


def test_a_new_store_object_sees_every_run_with_its_full_curve(store, short_text):
    ids = [train_recorded(store, short_text, TrainConfig(num_epochs=n, **SMALL), checkpoint_every=4)[0] for n in (6, 9)]
    reopened = RunStore(store.home)  # as a restarted app or another process would
    runs = {r["id"]: r for r in reopened.runs()}
    assert set(runs) == set(ids)
    for run_id, n in zip(ids, (6, 9), strict=True):
        assert runs[run_id]["status"] == "finished" and runs[run_id]["epochs"] == n
        curve = reopened.history(run_id)
        assert [e["epoch"] for e in curve] == list(range(1, n + 1))
        assert all(e["perplexity"] > 1 for e in curve)
        assert [c["epoch"] for c in reopened.checkpoints(run_id)] == [e for e in (4, 8, n) if e <= n]
    assert runs[ids[0]]["config"]["num_hiddens"] == 32 and runs[ids[0]]["corpus"]["sha1"] == short_text.sha1


def test_resume_continues_the_epoch_count_and_matches_an_uninterrupted_run(store, short_text):
    config = TrainConfig(num_epochs=12, sampling="random", **SMALL)
    _, straight = train_recorded(store, short_text, config, checkpoint_every=4)

    def stop_after_six():  # checked between minibatches: stops early in epoch 7
        return len(store.history(run_id_box[0])) >= 6 if run_id_box else False

    run_id_box = []
    run_id, stopped = train_recorded(
        store, short_text, config, checkpoint_every=4, should_stop=stop_after_six, on_start=run_id_box.append
    )
    assert stopped.stopped and store.run(run_id)["status"] == "stopped"
    _, resumed = train_recorded(store, short_text, TrainConfig(device="cpu"), checkpoint_every=4, resume=run_id)
    curve = store.history(run_id)
    assert [e["epoch"] for e in curve] == list(range(1, 13))
    assert resumed.history[0].epoch == 7  # stopping wrote a checkpoint of epoch 6, between periodic ones
    elapsed = [e["elapsed"] for e in curve]
    assert elapsed == sorted(elapsed)  # the resumed run's clock continues
    for ours, ref in zip(curve, straight.history, strict=True):
        assert ours["perplexity"] == pytest.approx(ref.perplexity, rel=1e-5)
    assert store.run(run_id)["status"] == "finished"


def test_a_killed_training_process_leaves_a_clean_store(tmp_path, time_machine_path):
    home = tmp_path / "home"
    args = ["--epochs", "400", "--num-hiddens", "64", "--max-tokens", "3000", "--checkpoint-every", "3", "--json"]
    proc = cli_train(home, *args)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            runs = RunStore(home).runs() if (home / "runs.sqlite").exists() else []
            if runs and runs[0]["epochs"] >= 7:
                break
            if proc.poll() is not None:
                pytest.fail(f"training ended early: {proc.stderr.read()}")
            time.sleep(0.2)
        else:
            pytest.fail("the training process never reached epoch 7")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    store = RunStore(home)  # opening it notices the dead process
    (run,) = store.runs()
    assert run["status"] == "interrupted" and run["epochs"] >= 7
    last = store.last_checkpoint(run["id"])
    assert last is not None and last["epoch"] >= 6
    model, vocab, ckpt = load_stored(store, run["id"], last["epoch"])
    text = predict(model, vocab, "time traveller", 20)
    assert text.startswith("time traveller") and len(text) == 34
    assert not (home / "checkpoints" / run["id"]).exists()  # no half-written file: checkpoints are rows
    for c in store.checkpoints(run["id"]):  # every recorded checkpoint is complete
        load_stored(store, run["id"], c["epoch"])


def test_concurrent_writers_lose_no_rows(store, short_text, time_machine_path):
    args = ["--epochs", "25", "--num-hiddens", "16", "--max-tokens", "2000", "--checkpoint-every", "5", "--json"]
    procs = [cli_train(store.home, *args) for _ in range(2)]
    # meanwhile, this process writes too, from two threads, as the app's workers would
    fake = [store.create_run({"num_epochs": 200}, {"name": "fake"}, "cpu") for _ in range(2)]

    def write(run_id):
        for e in range(1, 201):
            store.add_epoch(run_id, {"epoch": e, "perplexity": 2.0, "tokens_per_sec": 1.0, "loss": 0.7})

    threads = [threading.Thread(target=write, args=(r,)) for r in fake]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    runs = store.runs()
    assert len(runs) == 4
    assert sorted(r["epochs"] for r in runs) == [25, 25, 200, 200]


def test_a_checkpoint_for_another_vocab_or_shape_is_refused(store, short_text, tmp_path):
    config = TrainConfig(num_epochs=6, **SMALL)
    box = []  # stopped after epoch 4, so it has epochs left to resume
    stop = lambda: bool(box) and len(store.history(box[0])) >= 4  # noqa: E731
    run_id, _ = train_recorded(store, short_text, config, checkpoint_every=2, should_stop=stop, on_start=box.append)
    assert store.run(run_id)["status"] == "stopped"
    path = tmp_path / "other.pt"
    other = load_corpus(b"completely different text! " * 200, mode="raw", max_tokens=0)
    save_checkpoint(
        path,
        build_model(len(other.vocab), config),
        other.vocab,
        config,
        epoch=4,
        loader_state={"rng": [3, [0] * 625, None], "offset": 0},
    )
    store.add_checkpoint(run_id, store.last_checkpoint(run_id)["epoch"], path.read_bytes())
    with pytest.raises(CheckpointError, match="another vocab"):
        train_recorded(store, short_text, config, resume=run_id)


def test_rename_delete_and_bad_ids(store, short_text):
    run_id, _ = train_recorded(store, short_text, TrainConfig(num_epochs=2, **SMALL), checkpoint_every=1)
    store.rename(run_id, "  my run  ")
    assert store.run(run_id)["name"] == "my run"
    with pytest.raises(ValueError, match="name"):
        store.rename(run_id, "   ")
    assert len(store.checkpoints(run_id)) == 2
    store.delete(run_id)
    assert store.runs() == [] and store.checkpoints(run_id) == []
    with pytest.raises(ValueError, match="no run with id"):
        store.run("nope")


def test_held_out_perplexity_is_recorded_with_its_final_and_best(store):
    run_id = store.create_run({"num_epochs": 5}, {"name": "fake"}, "cpu")
    vals = {1: None, 2: 9.0, 3: 7.5, 4: 8.0, 5: None}  # evaluated every few epochs only
    for epoch, val in vals.items():
        stats = EpochStats(epoch, 10.0 - epoch, 1.0, 1.0, 0.0, float(epoch), 1.0, val_perplexity=val)
        store.add_epoch(run_id, stats if epoch % 2 else {**asdict(stats)})
    other = store.create_run({"num_epochs": 1}, {"name": "fake"}, "cpu")
    store.add_epoch(other, {"epoch": 1, "perplexity": 3.0})  # a dict without the field: NULL
    assert [e["val_perplexity"] for e in store.history(run_id)] == list(vals.values())
    runs = {r["id"]: r for r in store.runs()}
    assert runs[run_id]["final_val_perplexity"] == 8.0  # the newest evaluated epoch, not the last epoch
    assert (runs[run_id]["best_val_perplexity"], runs[run_id]["best_val_epoch"]) == (7.5, 3)
    assert runs[other]["final_val_perplexity"] is None and runs[other]["best_val_epoch"] is None


def test_a_resumed_run_stopped_before_its_next_epoch_says_that_no_epoch_was_trained(store, short_text):
    """No epoch, no figure: the closing line says that no epoch was trained, not 'perplexity nan'."""
    config = TrainConfig(num_epochs=6, **SMALL)
    box = []
    stop = lambda: bool(box) and len(store.history(box[0])) >= 2  # noqa: E731
    run_id, first = train_recorded(store, short_text, config, checkpoint_every=2, should_stop=stop, on_start=box.append)
    assert first.stopped and first.summary().startswith("perplexity ")
    _, again = train_recorded(store, short_text, config, resume=run_id, should_stop=lambda: True)
    assert again.stopped and len(store.history(run_id)) == 2
    assert again.summary() == "no epoch was trained (stopped before one ended) on cpu"
