"""The CLI against hostile arguments, table-driven: each is refused BEFORE any text or checkpoint is read,
with exit status 2 and ONE stderr line naming the flag; Ctrl-C and SIGTERM stop a run so it can be resumed;
every --json line is strict JSON.

Most cases run `main([...])` in this process; a signal needs a real process (tests/support.py's cli_train)."""

import hashlib
import json
import math
import os
import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest
import torch
from stored import put_checkpoint, stored_checkpoint
from support import cli_train

from charrnn.cli import main
from charrnn.data import load_corpus
from charrnn.runs.checkpoint import make_checkpoint, save_checkpoint
from charrnn.runs.recorder import load_run_checkpoint, train_recorded
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig, build_model

TINY = ["--num-hiddens", "16", "--max-tokens", "2000", "--batch-size", "4", "--num-steps", "8", "--device", "cpu"]
SMALL = {"num_hiddens": 16, "max_tokens": 2000, "batch_size": 4, "num_steps": 8, "device": "cpu"}


def cli(capsys, *args) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `python -m charrnn ARGS`, run in this process."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse's own exit for a bad flag
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code: int, err: str, needle: str, status: int = 2) -> None:
    lines = err.strip().splitlines()
    assert code == status and len(lines) == 1, err
    assert needle in lines[0] and "Traceback" not in err, err


def reject(constant):
    raise AssertionError(f"not JSON: {constant}")


def strict(line: str):
    return json.loads(line, parse_constant=reject)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A run store of this test's own."""
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No text anywhere (an empty data folder and cache): loading one would try to download it."""
    for var in ("CHARRNN_DATA_DIR", "CHARRNN_CACHE_DIR"):
        folder = tmp_path / var.lower()
        folder.mkdir()
        monkeypatch.setenv(var, str(folder))
    return tmp_path / "charrnn_cache_dir"


@pytest.fixture(scope="module")
def text(time_machine_path):
    return load_corpus("time_machine", max_tokens=2000, download=False)


def make_run(text, epochs=4, every=2, status="stopped") -> str:
    """A tiny run in the current store, checkpointed every `every` epochs, then given `status`."""
    store = RunStore()
    run_id, _ = train_recorded(store, text, TrainConfig(num_epochs=epochs, **SMALL), checkpoint_every=every)
    store.finish(run_id, status)
    return run_id


# ---- 1, 2, 6: every flag checked before any text is loaded ------------------------------------------


def special_paths(tmp_path: Path) -> dict:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    return {"FIFO": fifo, "DIR": tmp_path, "MISSING": tmp_path / "no" / "such" / "run.pt"}


ARGUMENTS = [
    (["train", "--device", "tpu"], "--device"),
    (["train", "--device", "cuda:7", "--epochs", "1"], "--device"),
    (["info", "--num-hiddens", "9000"], "--num-hiddens"),
    (["train", "--num-hiddens", "9000"], "--num-hiddens"),
    (["generate", "--checkpoint", "MISSING", "--device", "tpu"], "--device"),
    (["train", "--save", "FIFO"], "--save"),
    (["train", "--save", "DIR"], "--save"),
    (["train", "--save", ""], "--save"),
    (["train", "--save", "MISSING"], "--save"),
    (["train", "--save", "/dev/null"], "--save"),
    (["train", "--lr", "1e39"], "--lr"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--clip", "1e7"], "--clip"),
    (["train", "--clip", "-inf"], "--clip"),
    (["train", "--seed", "1e23"], "--seed"),
    (["train", "--seed", str(10**30)], "--seed"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--seed", "9" * 5000], "--seed"),
    (["train", "--epochs", "9" * 5000], "--epochs"),
    (["train", "--num-layers", "0"], "--num-layers"),
    (["train", "--num-layers", "99"], "--num-layers"),
    (["train", "--dropout", "1"], "--dropout"),
    (["train", "--dropout", "-0.1"], "--dropout"),
    (["train", "--dropout", "nan"], "--dropout"),
    (["train", "--cell", "transformer"], "--cell"),
    (["train", "--ngram-order", "13"], "--ngram-order"),
    (["train", "--ngram-order", "-1"], "--ngram-order"),
    (["train", "--ngram-order", "7"], "--ngram-weight 0"),
    (["train", "--ngram-weight", "0.4"], "set --ngram-order"),
    (["train", "--ngram-order", "7", "--ngram-weight", "1"], "--ngram-weight"),
    (["train", "--ngram-weight", "nan"], "--ngram-weight"),
    (["train", "--resume", "../../etc"], "--resume"),
    (["train", "--resume", "0123456789"], "--resume"),
    (["train", "--corpus", "FIFO"], "--corpus"),
    (["generate", "--checkpoint", "FIFO"], "--checkpoint"),
    (["generate", "--checkpoint", "/proc/self/mem"], "not a regular file"),
    (["generate", "--run", "0123456789"], "--run"),
    (["generate", "--run", "x; DROP TABLE runs"], "--run"),
    (["generate", "--run", "0123456789", "--epoch", "first"], "--epoch"),
    (["generate", "--run", "0123456789", "--epoch", "0"], "--epoch"),
    (["generate", "--checkpoint", "MISSING", "--epoch", "last"], "--epoch picks one of a --run's checkpoints"),
    (["generate", "--checkpoint", "MISSING", "--temperature", "inf"], "--temperature"),
    (["generate", "--checkpoint", "MISSING", "--temperature", "nan"], "--temperature"),
    (["generate", "--checkpoint", "MISSING", "--num-preds", "10001"], "--num-preds"),
    (["generate", "--checkpoint", "MISSING", "--prefix", "x" * 10_001], "--prefix"),
    (["generate", "--checkpoint", "MISSING", "--prefix", ""], "--prefix"),
    (["generate", "--checkpoint", "MISSING", "--seed", str(2**63)], "--seed"),
    (["runs", "delete", "../x"], "no run with id"),
    (["runs", "delete", "0123456789"], "no run with id"),
    (["runs", "mark-interrupted", "nope"], "no run with id"),
]


@pytest.mark.parametrize("args, needle", ARGUMENTS, ids=[" ".join(a)[:50] for a, _ in ARGUMENTS])
def test_a_bad_argument_is_one_line_before_any_text_is_read(args, needle, capsys, tmp_path, home, offline):
    paths = special_paths(tmp_path)
    code, out, err = cli(capsys, *(str(paths.get(a, a)) for a in args))
    assert_refused(code, err, needle)
    assert not list(offline.iterdir())  # nothing downloaded or cached: the text was never asked for
    assert paths["FIFO"].exists() and Path("/dev/null").is_char_device()  # nothing replaced


def test_a_checkpoint_error_speaks_of_the_file_not_of_flags_generate_lacks(capsys, home, tmp_path):
    """generate has no --num-hiddens: a checkpoint whose shapes disagree with its num_hiddens says num_hiddens."""
    vocab = load_corpus("fallback", max_tokens=2000).vocab
    path = tmp_path / "lying.pt"
    save_checkpoint(path, build_model(len(vocab), TrainConfig(**SMALL)), vocab, TrainConfig(**SMALL))
    ckpt = torch.load(path, weights_only=True)
    ckpt["model_config"]["num_hiddens"] = 17
    torch.save(ckpt, path)
    code, _, err = cli(capsys, "generate", "--checkpoint", path)
    assert code == 2 and err.count("\n") == 1 and "num_hiddens 17" in err and "--num-hiddens" not in err, err


def test_the_save_folder_must_be_writable_for_real(capsys, home, offline):
    code, _, err = cli(capsys, "train", "--save", "/proc/run.pt")  # root passes os.access there
    assert_refused(code, err, "--save")


@pytest.mark.parametrize("make", ["file", "proc"])
def test_a_home_that_cannot_be_a_store_is_one_line(make, capsys, tmp_path, monkeypatch):
    where = tmp_path / "a-file" if make == "file" else Path("/proc/charrnn-home")
    if make == "file":
        where.write_text("not a folder")
    monkeypatch.setenv("CHARRNN_HOME", str(where))
    code, _, err = cli(capsys, "runs")
    assert_refused(code, err, str(where))


# ---- 3: Ctrl-C and SIGTERM stop like the app's Stop button ------------------------------------------


def epochs_recorded(home: Path) -> int:
    runs = RunStore(home).runs() if (home / "runs.sqlite").exists() else []
    return runs[0]["epochs"] if runs else 0


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_run_resumably(sig, status, tmp_path, time_machine_path, capsys, monkeypatch):
    home = tmp_path / "home"
    proc = cli_train(home, *TINY, "--epochs", "100000", "--checkpoint-every", "1000")
    try:
        deadline = time.monotonic() + 120
        while epochs_recorded(home) < 3:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the run never reached epoch 3"
            time.sleep(0.2)
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == status
    finally:
        proc.kill()
    err = proc.stderr.read().strip().splitlines()
    store = RunStore(home)
    (run,) = store.runs()
    last = store.history(run["id"])[-1]["epoch"]
    assert run["status"] == "stopped" and store.last_checkpoint(run["id"])["epoch"] == last
    assert err[-1] == f"stopped at epoch {last}; resume with `python -m charrnn train --resume {run['id']}`"
    monkeypatch.setenv("CHARRNN_HOME", str(home))
    code, _, err = cli(capsys, "train", "--resume", run["id"], "--epochs", last + 2, "--json")
    assert code == 0, err
    assert [e["epoch"] for e in store.history(run["id"])] == list(range(1, last + 3))
    assert store.run(run["id"])["status"] == "finished"


def test_ctrl_c_twice_keeps_the_finished_epochs_and_the_run_resumable(text, home):
    store = RunStore()

    def impatient(stats):  # a KeyboardInterrupt in the middle of training, after epoch 3
        if stats.epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_recorded(store, text, TrainConfig(num_epochs=8, **SMALL), on_epoch=impatient, checkpoint_every=50)
    (run,) = store.runs()
    assert run["status"] == "interrupted" and store.last_checkpoint(run["id"])["epoch"] == 3
    _, result = train_recorded(store, text, TrainConfig(device="cpu"), resume=run["id"])
    assert result.history[0].epoch == 4 and store.run(run["id"])["status"] == "finished"


# ---- 4: runs delete / runs mark-interrupted ---------------------------------------------------------


def stuck_run(store: RunStore) -> str:
    """A run left "running" by a process on another machine (so opening the store cannot tell it is gone)."""
    run_id = store.create_run(TrainConfig(**SMALL), {"name": "x"}, "cpu")
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE runs SET host=? WHERE id=?", (socket.gethostname() + "-elsewhere", run_id))
    return run_id


def test_a_stuck_run_is_explained_marked_interrupted_and_deleted(capsys, home):
    store = RunStore()
    run_id = stuck_run(store)
    code, out, _ = cli(capsys, "runs")
    assert code == 0 and f"runs mark-interrupted {run_id}" in out.splitlines()[-1]
    assert_refused(*cli(capsys, "runs", "delete", run_id)[::2], "mark-interrupted")
    assert store.run(run_id)["status"] == "running"
    code, out, _ = cli(capsys, "runs", "mark-interrupted", run_id)
    assert code == 0 and store.run(run_id)["status"] == "interrupted"
    assert_refused(*cli(capsys, "runs", "mark-interrupted", run_id)[::2], "not running")
    code, out, _ = cli(capsys, "runs", "delete", run_id)
    assert code == 0 and store.runs() == []


# ---- 5: smaller losses --------------------------------------------------------------------------------


def test_generate_says_when_the_newest_checkpoint_cannot_be_used(capsys, home, text):
    run_id = make_run(text, epochs=6)
    store = RunStore()

    def put(epoch: int, data: bytes, sha256: str | None = None) -> None:  # a row's bytes changed under the store
        with sqlite3.connect(store.path) as db:
            db.execute(
                "UPDATE checkpoints SET data=?, sha256=COALESCE(?, sha256) WHERE run_id=? AND epoch=?",
                (data, sha256, run_id, epoch),
            )
        db.close()

    newest = store.checkpoint_bytes(run_id, 6)
    put(6, newest[:-1] + bytes([newest[-1] ^ 1]))  # one bit flipped: its SHA-256 no longer matches
    cut = store.checkpoint_bytes(run_id, 4)[:500]
    put(4, cut, hashlib.sha256(cut).hexdigest())  # cut short, its hash made to match: the loader refuses it
    code, out, err = cli(capsys, "generate", "--run", run_id, "--json")
    assert code == 0 and strict(out)["text"].startswith("time traveller")
    (line,) = err.strip().splitlines()
    assert line.startswith("warning: the newest checkpoint (epoch 6) is unreadable (") and "SHA-256" in line
    assert line.endswith("; using epoch 2")
    put(6, b"PK\x03\x04 cut short", hashlib.sha256(b"PK\x03\x04 cut short").hexdigest())
    *_, ckpt, note = load_run_checkpoint(store, run_id)
    assert ckpt["epoch"] == 2 and note.startswith("the newest checkpoint (epoch 6) is unreadable (")
    store.delete_checkpoint(run_id, 2)
    assert_refused(
        *cli(capsys, "generate", "--run", run_id)[::2], f"--run {run_id}: run {run_id} has no checkpoint that loads"
    )


def test_generate_from_a_run_uses_its_best_held_out_checkpoint_unless_told_and_says_which(capsys, home, text):
    """Issue 22: `generate --run` takes the best held-out checkpoint by default and names its epoch;
    `--epoch last` and `--epoch N` pick others; an epoch without a checkpoint says which ones exist."""
    import sqlite3

    store = RunStore()
    run_id, _ = train_recorded(store, text, TrainConfig(num_epochs=4, eval_every=1, **SMALL), checkpoint_every=1)
    with sqlite3.connect(store.path) as db:  # make epoch 2 the best, whatever training gave
        db.execute("UPDATE epochs SET val_perplexity = 1.5 WHERE run_id=? AND epoch=2", (run_id,))
    texts = {}
    for epoch in ("best", "last", "2", "4"):
        code, out, err = cli(capsys, "generate", "--run", run_id, "--epoch", epoch, "--num-preds", "200", "--json")
        assert code == 0, err
        texts[epoch] = (strict(out)["text"], err.strip())
    assert texts["best"][1] == "epoch 2: the best held-out checkpoint (1.500)"
    assert texts["last"][1] == "epoch 4: the last checkpoint"
    assert texts["best"][0] == texts["2"][0] and texts["last"][0] == texts["4"][0] != texts["2"][0]
    code, out, err = cli(capsys, "generate", "--run", run_id)  # the default is the best
    assert code == 0 and err.strip() == texts["best"][1]
    assert_refused(*cli(capsys, "generate", "--run", run_id, "--epoch", "9")[::2], "kept: 1, 2, 3, 4")


def test_run_store_checkpoints_hold_no_history_but_a_save_file_does(capsys, home, tmp_path, time_machine_path):
    save = tmp_path / "s.pt"
    code, out, err = cli(capsys, "train", *TINY, "--epochs", "3", "--checkpoint-every", "1", "--save", save, "--json")
    assert code == 0, err
    run_id = strict(out.strip().splitlines()[-1])["run_id"]
    for c in RunStore().checkpoints(run_id):
        assert stored_checkpoint(RunStore(), run_id, c["epoch"])["history"] == []
    assert [h["epoch"] for h in torch.load(save, weights_only=True)["history"]] == [1, 2, 3]


def test_resume_honours_epochs_and_refuses_too_few(capsys, home, offline, text):
    run_id = make_run(text, epochs=4, status="finished")
    assert_refused(*cli(capsys, "train", "--resume", run_id)[::2], "--epochs")  # already at its own 4
    assert_refused(*cli(capsys, "train", "--resume", run_id, "--epochs", "3")[::2], "--epochs")
    assert not list(offline.iterdir())  # refused before the text was looked for


def test_resume_trains_to_the_new_total(capsys, home, text, time_machine_path):
    run_id = make_run(text, epochs=4, status="finished")
    code, _, err = cli(capsys, "train", "--resume", run_id, "--epochs", "6")
    assert code == 0, err
    assert [e["epoch"] for e in RunStore().history(run_id)] == [1, 2, 3, 4, 5, 6]


def test_a_checkpoint_without_iterator_state_cannot_be_resumed(capsys, home, text, time_machine_path):
    run_id = make_run(text, epochs=4)
    store = RunStore()
    config = TrainConfig(**SMALL)
    ckpt = make_checkpoint(build_model(len(text.vocab), config), text.vocab, config, epoch=4)
    put_checkpoint(store, run_id, store.last_checkpoint(run_id)["epoch"], ckpt)
    assert_refused(*cli(capsys, "train", "--resume", run_id, "--epochs", "6")[::2], "no iterator state")


def test_a_checkpoint_of_another_cell_cannot_resume_the_run(capsys, home, text, time_machine_path):
    """A GRU run whose newest checkpoint holds an LSTM (the run's own shapes, another cell): refused in one line
    that names both, instead of loading weights into a model they do not fit."""
    store = RunStore()
    run_id, _ = train_recorded(store, text, TrainConfig(num_epochs=2, cell="gru", **SMALL), checkpoint_every=2)
    store.finish(run_id, "stopped")
    lstm = TrainConfig(**SMALL, cell="lstm")
    put_checkpoint(store, run_id, 2, make_checkpoint(build_model(len(text.vocab), lstm), text.vocab, lstm, epoch=2))
    code, _, err = cli(capsys, "train", "--resume", run_id, "--epochs", "4")
    assert code != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "scratch lstm" in err and "scratch gru" in err


def test_a_resumed_run_refuses_a_flag_that_would_change_its_model(capsys, home, text, time_machine_path):
    """`train --resume RUN --cell lstm` on a GRU run used to train the GRU on, the flag dropped in silence: a
    flag (or preset) asking for another value than the run's own is refused naming both; --device, --epochs
    and a flag that repeats the run's value are fine."""
    store = RunStore()
    run_id, _ = train_recorded(store, text, TrainConfig(num_epochs=2, cell="gru", **SMALL), checkpoint_every=2)
    store.finish(run_id, "stopped")
    for extra, needle in (
        (["--cell", "lstm"], "--cell lstm (the run's: gru)"),
        (["--lr", "0.5", "--num-hiddens=32"], "--lr 0.5 (the run's: 1.0), --num-hiddens 32 (the run's: 16)"),
        (["--preset", "book-lstm"], "--cell lstm (the run's: gru)"),
    ):
        code, _, err = cli(capsys, "train", "--resume", run_id, "--epochs", "4", *extra)
        assert_refused(code, err, needle)
    assert [e["epoch"] for e in store.history(run_id)] == [1, 2]  # nothing trained meanwhile
    code, _, err = cli(capsys, "train", "--resume", run_id, "--epochs", "3", "--cell", "gru", "--device", "cpu")
    assert code == 0, err
    assert [e["epoch"] for e in store.history(run_id)] == [1, 2, 3]


# ---- 7: strict JSON ---------------------------------------------------------------------------------


def test_a_diverged_run_writes_strict_json(capsys, home, time_machine_path, tmp_path):
    args = ["--lr", "100", "--clip", "0", "--num-hiddens", "64", "--max-tokens", "2000", "--batch-size", "8"]
    args += ["--epochs", "50", "--device", "cpu", "--save", tmp_path / "x.pt", "--json"]
    code, out, err = cli(capsys, "train", *args)
    assert code == 0, err
    *epochs, final = [strict(line) for line in out.strip().splitlines()]
    assert final["status"] == "diverged" and final["perplexity"] is None and "infinite" in final["reason"]
    assert epochs[-1]["perplexity"] is None and len(epochs) < 50
    assert final["checkpoint"] is None and not (tmp_path / "x.pt").exists() and "--save" in err
    code, out, _ = cli(capsys, "runs", "--json")
    (run,) = strict(out)
    assert run["status"] == "diverged" and run["final_perplexity"] is None
    assert all(math.isfinite(e["perplexity"]) for e in epochs[:-1])
