"""charrnn tune's bad input: one line naming the flag, exit 2, before any study or trial. The storage must be
a file in a folder SQLite can write; no line is over 300 characters, whatever was typed; a cadence the
pruner cannot act on is said before the study starts.

Trials, where there are any, are test_tune's tiny ones (a few seconds each on 2 CPU cores).
"""

import json
import os
import sys
from dataclasses import replace

import pytest
from test_tune import STORE, TINY, parse

from charrnn.cli import tune
from charrnn.data import load_corpus
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig, estimate_bytes
from charrnn.tune.space import MAX_LINE
from charrnn.tune.storage import masked
from charrnn.tune.tuner import Tuner

# ---- bad input: one line, exit 2 ---------------------------------------------------------------

BAD_RUNS = [
    (["--space", ""], "--space: the space is empty"),
    (["--space", "momentum=0.1:0.9"], "--space: unknown hyperparameter 'momentum'"),
    (["--space", "lr=4:0.5:log"], "--space: lr=4:0.5:log: the low bound 4 is above the high bound 0.5"),
    (["--space", "lr=0:4:log"], "a log range must stay above 0"),
    (["--study", "a/b;drop"], "--study: 'a/b;drop' is not a study name"),
    (["--study", "x" * 101], "is not a study name"),
    (["--storage", "not a url"], "--storage: 'not a url' is not a database URL"),
    (["--storage", "nosuchdb://u:pw@h/db"], "--storage: no database driver for 'nosuchdb'"),
    (["--storage", "sqlite:////nonexistent-folder/x/t.sqlite"], "--storage: the folder /nonexistent-folder/x does"),
    (["--space", "num_hiddens=4096|8192", "--batch-size", "50000"], "--space: num_hiddens=4096: num_hiddens 4096"),
    (["--space", "num_steps=8|5000"], "--space: num_steps=5000: "),
    (["--device", "cuda:7"], "--device: device 'cuda:7'"),
    (["--space", "dropout=0:0.99"], "--space: dropout=0.99: dropout must be a probability from 0 (off) to 0.95"),
    (["--space", "num_layers=0:2"], "--space: num_layers=0: num_layers must be a whole number from 1 to 8, not 0"),
    (["--space", "num_layers=2:9"], "--space: num_layers=9: num_layers must be a whole number from 1 to 8"),
    (["--space", "cell=gru|cnn"], "--space: cell takes one of rnn, gru, lstm, not 'cnn'"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_RUNS)
def test_bad_input_is_one_line_naming_the_flag(argv, message, tmp_path, capsys, time_machine_path):
    args = parse(
        "--study", "s", "--storage", STORE.format(tmp=tmp_path), "--trials", "1", "--epochs", "1", *TINY, *argv
    )
    assert tune.run(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m charrnn tune: error: "), err
    assert message in err, err


def test_an_unreachable_server_is_named_with_its_password_masked(tmp_path, capsys, time_machine_path):
    url = "postgresql+psycopg://alice:s3cret@127.0.0.1:1/db"  # port 1: nothing listens
    assert tune.run(parse("--study", "s", "--storage", url, *TINY)) == 2
    err = capsys.readouterr().err
    assert "--storage: cannot open postgresql+psycopg://alice:***@127.0.0.1:1/db" in err, err
    assert "s3cret" not in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [["--trials", "0"], ["--epochs", "-3"], ["--epochs", "x"], ["--num-layers", "0"], ["--dropout", "0.99"]]
    + [["--cell", "transformer"], ["--num-layers", "9"], ["--dropout", "-0.1"]]
    + [["--optimizer", "rmsprop"], ["--weight-decay", "-0.1"], ["--weight-decay", "2"], ["--eval-every", "0"]],
)
def test_trials_and_epochs_must_be_positive(argv, capsys):
    with pytest.raises(SystemExit) as e:
        parse("--study", "s", *argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and argv[0] in err, err


def test_the_largest_shape_is_checked_with_each_cell_and_the_most_layers(
    tmp_path, capsys, monkeypatch, time_machine_path
):
    """Each bound fits alone (one rnn or lstm layer, four rnn layers); the space's largest shape, four
    lstm layers, does not fit in the free memory set here, and is refused before the study exists."""
    corpus = load_corpus("time_machine", "book", 2000, download=False)
    base = TrainConfig(num_hiddens=256, batch_size=4, num_steps=8)
    need = {
        (cell, layers): estimate_bytes(replace(base, cell=cell, num_layers=layers), len(corpus.vocab))
        for cell in ("rnn", "lstm")
        for layers in (1, 4)
    }
    largest_alone = max(v for k, v in need.items() if k != ("lstm", 4))
    free = (largest_alone + need["lstm", 4]) / 2 / 0.8  # check_fits keeps a fifth of the device free
    monkeypatch.setattr(sys.modules["charrnn.train"], "free_bytes", lambda device: free)  # the module, not train()
    argv = ["--study", "deep", "--storage", STORE.format(tmp=tmp_path), *TINY]
    args = parse(*argv, "--num-hiddens", "256", "--space", "cell=rnn|lstm,num_layers=1:4")
    assert tune.run(args) == 2
    err = capsys.readouterr().err
    assert "--space: num_layers=4, cell=lstm: num_hiddens 256" in err and "GiB free" in err, err
    assert err.count("\n") == 1 and not (tmp_path / "t.sqlite").exists()


def test_passwords_never_show():
    assert masked("postgresql+psycopg://bob:pw@db.example/x") == "postgresql+psycopg://bob:***@db.example/x"
    assert masked("weird://bob:pw@@@") == "weird://bob:***@@@"
    assert masked("sqlite:////tmp/t.sqlite") == "sqlite:////tmp/t.sqlite"


# ---- the storage: a file, or none yet, in a folder SQLite can write ------------------------------


def test_a_storage_that_is_not_a_regular_file_is_refused_and_nothing_is_written_beside_it(tmp_path, capsys):
    """`--storage sqlite:////dev/null` once made /dev/null-journal: a link to /dev/null is refused here
    before SQLite opens it, and no journal appears beside the link or the device."""
    link = tmp_path / "null.sqlite"
    link.symlink_to(os.devnull)
    journal_before = os.path.exists(os.devnull + "-journal")
    for storage, what in ((f"sqlite:///{link}", str(link)), ("sqlite:////dev/null", "/dev/null")):
        args = parse("--study", "s", "--storage", storage, "--trials", "1", "--epochs", "1", *TINY)
        assert tune.run(args) == 2
        err = capsys.readouterr().err
        assert (
            err == f"python -m charrnn tune: error: --storage: {what} is not a regular file; give a file path "
            "for the study database\n"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null.sqlite"]
    assert os.path.exists(os.devnull + "-journal") == journal_before


STORAGES = [
    ("", "--storage: the URL is empty; give one, e.g. sqlite:///tune.sqlite, or leave it out"),
    ("  ", "--storage: the URL is empty"),
    ("sqlite:///{tmp}", "--storage: {tmp} is not a regular file"),  # a folder
    ("sqlite://", "--storage: sqlite:// is an in-memory database, which keeps no study"),
    ("sqlite:///:memory:", "is an in-memory database"),
    ("sqlite:///{tmp}/missing/t.sqlite", "--storage: the folder {tmp}/missing does not exist; create it"),
]


@pytest.mark.parametrize(("storage", "message"), STORAGES)
def test_a_storage_url_that_cannot_hold_a_study_is_one_line(storage, message, tmp_path, capsys, monkeypatch):
    """An empty --storage is an error, not the default (tune.sqlite by the runs) taken silently."""
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    storage, message = storage.format(tmp=tmp_path), message.format(tmp=tmp_path)
    assert tune.run(parse("--study", "s", "--storage", storage, "--trials", "1", "--epochs", "1", *TINY)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "home" / "tune.sqlite").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in any folder")
def test_a_folder_sqlite_cannot_write_in_is_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert tune.run(parse("--study", "s", "--storage", f"sqlite:///{locked}/t.sqlite", *TINY)) == 2
    assert f"--storage: cannot write {locked}/t.sqlite or its folder" in capsys.readouterr().err


# ---- no line over 300 characters -------------------------------------------------------------------


def test_a_space_of_ten_thousand_choices_is_refused_in_one_short_line(tmp_path, capsys):
    many = "|".join(str(i) for i in range(1, 10_001))
    for space in (f"num_hiddens={many}", f"lr=0.1:1,cell={'gru|' * 5000}lstm", f"{'z' * 50_000}=1:2"):
        assert tune.run(parse("--study", "s", "--storage", STORE.format(tmp=tmp_path), *TINY, "--space", space)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and len(err) - 1 <= MAX_LINE and "--space: " in err, err[:400]


def test_joining_a_study_of_another_long_space_says_so_in_one_short_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    argv = ["--study", "long", "--storage", STORE.format(tmp=tmp_path), *TINY]
    hundred = "|".join(str(i) for i in range(8, 108))
    tune.prepare(parse(*argv, "--space", f"num_hiddens={hundred}"))  # the study exists, with this space
    assert tune.run(parse(*argv, "--space", f"num_hiddens={hundred.replace('|107', '|200')}", "--lr", "2")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) - 1 <= MAX_LINE, err
    assert "--study: study 'long' already exists with other settings (space num_hiddens=8|9|" in err


# ---- the evaluation cadence: enough held-out figures for the pruner, or a note before the study -------

CADENCE_TINY = [a for a in TINY if a not in ("--eval-every", "1")]  # the cadence left to tune


def test_trials_are_evaluated_at_least_five_times_by_default(tmp_path, capsys, monkeypatch):
    """5 epochs and no --eval-every: every epoch has a held-out figure (the old default, every 10
    epochs, gave one: the last), and no note is printed."""
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    argv = ["--study", "five", "--storage", STORE.format(tmp=tmp_path), "--trials", "1", "--epochs", "5", "--json"]
    assert tune.run(parse(*argv, *CADENCE_TINY)) == 0
    out, err = capsys.readouterr()
    assert "note:" not in err, err
    (trial,) = json.loads(out)["trials"]
    run = RunStore(tmp_path / "home").run(trial["run_id"])
    figures = [e["val_perplexity"] for e in RunStore(tmp_path / "home").history(run["id"])]
    assert run["config"]["eval_every"] == 1 and len(figures) == 5 and None not in figures


def test_a_cadence_the_pruner_cannot_act_on_is_said_before_the_first_trial(tmp_path, capsys, monkeypatch):
    """5 epochs evaluated every 10 give one figure a trial, at its last epoch, where no pruner acts."""
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    said = []
    real_run = Tuner.run
    monkeypatch.setattr(Tuner, "run", lambda self: said.append(capsys.readouterr().err) or real_run(self))
    argv = ["--study", "late", "--storage", STORE.format(tmp=tmp_path), "--trials", "1", "--epochs", "5"]
    assert tune.run(parse(*argv, *CADENCE_TINY, "--eval-every", "10")) == 0
    assert said == [
        "note: the median pruner cannot end a trial early: 5 epochs evaluated every 10 give 1 held-out figure "
        "a trial; give more epochs or evaluate more often (--eval-every, --epochs)\n"
    ]
    argv[1] = "none"
    assert tune.run(parse(*argv, *CADENCE_TINY, "--eval-every", "10", "--pruner", "none")) == 0
    assert said[1] == ""  # no pruner: nothing to say
