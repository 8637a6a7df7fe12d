"""`python -m charrnn reproduce --chapter 9`: the book's five runs of chapter 9, recorded, and their table."""

import json
import math
import os
import subprocess
import sys

import pytest

from charrnn.book import CHAPTER_9, CHAPTERS, EXPERIMENTS, Row, format_table, run_experiments, within
from charrnn.cli.parser import build_parser
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig

# (cell, kind, num_layers, lr) of each of the book's chapter 9 runs, in its order (BOOK.md)
BOOK_9 = [("gru", "scratch", 1, 1.0), ("gru", "concise", 1, 1.0), ("lstm", "scratch", 1, 1.0)]
BOOK_9 += [("lstm", "concise", 1, 1.0), ("lstm", "concise", 2, 2.0)]


def reproduce(home, *args):
    env = {**os.environ, "CHARRNN_HOME": str(home)}
    cmd = [sys.executable, "-m", "charrnn", "reproduce", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_chapter_9_records_the_books_five_runs_and_tabulates_them(time_machine_path, tmp_path):
    proc = reproduce(tmp_path, "--chapter", "9", "--epochs", "2", "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["name"] for r in rows] == [e.name for e in CHAPTER_9]
    assert [r["book_perplexity"] for r in rows] == [1.1, 1.1, 1.3, 1.2, 1.0]
    store = RunStore(tmp_path)
    configs = [store.run(r["run_id"])["config"] for r in rows]
    assert [(c["cell"], c["model"], c["num_layers"], c["lr"]) for c in configs] == BOOK_9
    for c in configs:  # the chapter's shared settings, with the epochs asked for
        assert (c["num_hiddens"], c["batch_size"], c["num_steps"], c["max_tokens"]) == (256, 32, 35, 10_000)
        assert (c["clip"], c["state"], c["sampling"]) == (1.0, "carry", "sequential")
        assert (c["num_epochs"], c["device"]) == (2, "cpu")
    for r in rows:
        assert store.run(r["run_id"])["status"] == "finished" and len(store.history(r["run_id"])) == 2
        assert 1 < r["perplexity"] < 28 and 1 < r["val_perplexity"] < 28  # held-out evaluated at the last epoch
        assert r["tokens_per_sec"] > 0 and r["seconds"] > 0 and r["device"] == "cpu"
        # two epochs are far from the book's ~1.1: the judgement must say so
        assert r["tolerance"] == 0.3 and r["within_book"] is False
    table = format_table([Row(**r) for r in rows]).splitlines()
    assert table[0].split()[:6] == ["run", "book", "ppl", "train", "ppl", "within"] and "0.3" in table[0]
    figures = [line for line in table if any(line.startswith(e.name) for e in CHAPTER_9)]
    assert len(figures) == 5 and all(" no " in line for line in figures)
    assert table[-1] == "0 of 5 runs within 0.3 of the book's training perplexity"
    assert "book:" not in "\n".join(table)  # BOOK.md gives no chapter 9 continuations to print


def test_chapter_8_stays_the_default_and_a_bad_chapter_names_the_flag(tmp_path):
    args = build_parser(lambda p: None).parse_args(["reproduce"])
    assert CHAPTERS[int(args.chapter)] is EXPERIMENTS
    proc = reproduce(tmp_path, "--chapter", "10")
    assert proc.returncode == 2 and "--chapter" in proc.stderr and "'8', '9'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not any(tmp_path.iterdir())  # nothing was recorded


def test_chapter_8s_table_has_no_acceptance_column(recipe_corpus):
    rows = run_experiments(recipe_corpus, overrides={"num_epochs": 1, "num_hiddens": 8, "device": "cpu"})
    assert all(r.tolerance is None and r.within_book is None for r in rows)
    table = format_table(rows)
    assert "within" not in table and table.count("    book: ") == 3


def test_within_is_the_books_tolerance():
    assert within(1.3, 1.0, 0.3) and within(0.8, 1.1, 0.3)  # the bound counts, either side, despite float rounding
    assert not within(1.41, 1.1, 0.3) and not within(0.79, 1.1, 0.3)
    assert not within(math.inf, 1.0, 0.3) and not within(math.nan, 1.0, 0.3)
    assert within(1.0, 1.0, None) is None


def test_every_chapter_9_run_is_the_books_recipe_at_256_hidden():
    for e in CHAPTER_9:
        config = TrainConfig(**e.overrides).validate()
        assert (config.num_epochs, config.batch_size, config.num_steps, config.max_tokens) == (500, 32, 35, 10_000)
        assert (config.clip, config.state, config.val_tokens, config.num_hiddens) == (1.0, "carry", 2000, 256)


@pytest.mark.slow
def test_the_scratch_gru_reproduces_the_books_perplexity(recipe_corpus):
    """One chapter 9 run in full (500 epochs) on the CPU; `reproduce --chapter 9` runs all five."""
    (row,) = run_experiments(recipe_corpus, overrides={"device": "cpu"}, experiments=CHAPTER_9[:1])
    assert row.within_book, f"training perplexity {row.perplexity:.3f} (the book: {row.book_perplexity})"
    assert row.best_val_perplexity < row.val_perplexity  # it memorised the 10,000 chars, as chapter 8's runs do
