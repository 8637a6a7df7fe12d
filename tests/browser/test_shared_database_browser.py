"""Two machines and a tune worker on one PostgreSQL run store, in a real browser (issue 23's acceptance).

A throwaway PostgreSQL cluster (tests/pg.py) holds the runs, their curves and their checkpoints. Two app servers
with their own CHARRNN_HOME (machines A and B) share it, and a `python -m charrnn tune` worker runs from a third
(machine C). A run started on A is watched live on B, stopped from B's Runs page, resumed from A's Runs page,
trains on through a restart of the server with no epoch lost, and is generated from on B, whose home holds no
checkpoint file. The worker's trials show on the Tune page of both servers with their curves, and "Generate from
it" works on B. Screenshots go to artifacts/screenshots/ (gitignored).
"""

import contextlib
import json
import os
import subprocess
import sys

import pytest
from support import (
    OWN_CHART_POINTS,
    WATCHED_CHART_POINTS,
    choose,
    go,
    new_context,
    no_exception,
    open_page,
    press,
    serve,
    settle,
    wait_for,
)
from support import shot as save_shot

from charrnn.runs.database import ENV
from charrnn.runs.store import RunStore

pytestmark = pytest.mark.browser

# The Train page's settings, through a link (ui.links): a tiny model on 2,000 chars that trains until stopped.
TRAIN = "num_hiddens=16&max_tokens=2000&batch_size=4&num_steps=8&num_epochs=100000&device=cpu"
# The worker's study: 2 trials of 2 epochs on the same tiny settings, judged on 200 held-out chars.
TUNE = ["--study", "shared", "--trials", "2", "--epochs", "2", "--space", "lr=0.5:2:log", "--json"]
TUNE += ["--num-hiddens", "16", "--max-tokens", "2000", "--batch-size", "4", "--num-steps", "8"]
TUNE += ["--val-tokens", "200", "--eval-every", "1", "--device", "cpu"]
PREFIX = "time traveller"  # the Generate page's default prefix; 50 characters follow it
# The traces of the Tune page's "Held-out perplexity during each trial" figure that hold points: one per trial.
TRIAL_CURVES = """() => {
  const el = document.querySelector(".st-key-tune_intermediate .js-plotly-plot");
  return el && el.data ? el.data.filter(trace => (trace.x || []).length > 0).length : 0;
}"""


def shot(pg, name: str):
    save_shot(pg, f"shared-database-{name}")


@pytest.fixture
def machines(postgres_cluster, tmp_path, time_machine_path):
    """(database URL, {machine: home}, {machine: app server URL}): servers A and B on one new database."""
    url = postgres_cluster.database(f"shared_{tmp_path.name[-20:].lower()}")
    homes = {m: tmp_path / m for m in "abc"}
    with contextlib.ExitStack() as servers:
        urls = {
            m: servers.enter_context(
                contextlib.contextmanager(serve)(
                    time_machine_path, CHARRNN_HOME=str(homes[m]), CHARRNN_TUNE_STORAGE="", **{ENV: url}
                )
            )
            for m in "ab"
        }
        yield url, homes, urls


def generated(pg) -> str:
    """The text the Generate page shows, once it is there."""
    code = pg.locator("[data-testid='stCode']", has_text=PREFIX)
    code.wait_for()
    return code.inner_text().strip("\n")


def tune_worker(home, url: str) -> subprocess.Popen:
    """`python -m charrnn tune` on machine C: its runs in the shared store, its study beside them (schema optuna)."""
    env = {**os.environ, "CHARRNN_HOME": str(home), ENV: url, "CHARRNN_TUNE_STORAGE": ""}
    cmd = [sys.executable, "-m", "charrnn", "tune", *TUNE]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_servers_and_a_tune_worker_share_one_postgres_store(postgres_cluster, machines, browser):
    url, homes, servers = machines
    store = RunStore(homes["b"], url)  # what machine B's store says
    worker = None
    try:
        # A starts a run; B's Train page lists it as training elsewhere and watches its curve grow.
        a = open_page(new_context(browser), f"{servers['a']}/train?{TRAIN}", "Train", 60_000)
        press(a, "train_start")
        a.wait_for_function(f"({OWN_CHART_POINTS})() >= 1")
        caption = a.locator(".st-key-train_own").get_by_text("Recorded in the run store as run").inner_text()
        run_id = caption.split(" as run ")[1].split()[0]
        b = open_page(new_context(browser), f"{servers['b']}/train", "Train", 60_000)
        choose(b, "Watch live (read-only)", run_id)
        b.wait_for_function(f"({WATCHED_CHART_POINTS})() >= 2")
        seen = b.evaluate(WATCHED_CHART_POINTS)
        b.wait_for_function(f"({WATCHED_CHART_POINTS})() > {seen}")  # live: it follows A's epochs
        no_exception(b)
        shot(b, "1-b-watches-a")

        # B's Runs page stops it; A's run ends "stopped", resumable from its last epoch's checkpoint.
        go(b, "Runs")
        b.get_by_text("running, ").first.wait_for()
        press(b, "runs_stop")
        wait_for(b, lambda: store.run(run_id)["status"] == "stopped", "the run did not stop when B asked")
        (run,) = store.runs(run_id=run_id)
        assert "stopped from the run store" in run["reason"], run["reason"]
        stopped_at = run["epochs"]
        assert stopped_at >= 2 and store.last_checkpoint(run_id)["epoch"] == stopped_at
        b.get_by_text("stopped: stopped from the run store").wait_for()  # B's page follows
        a.locator(".st-key-train_own [data-testid='stProgress']", has_text="stopped").wait_for()
        no_exception(a)
        no_exception(b)

        # A resumes it from its Runs page; B watches it again.
        go(a, "Runs")
        press(a, "runs_resume")
        a.wait_for_selector("h1:has-text('Train')")
        a.wait_for_function(f"({OWN_CHART_POINTS})() >= {stopped_at + 2}")
        go(b, "Train")
        if b.evaluate(WATCHED_CHART_POINTS) == 0:
            choose(b, "Watch live (read-only)", run_id)
        b.wait_for_function(f"({WATCHED_CHART_POINTS})() >= {stopped_at + 2}")

        # The PostgreSQL server restarts (an immediate stop, as a crash) while the run trains: it trains on, B's
        # view follows it afterwards, and A's Stop ends it with every epoch in the store.
        postgres_cluster.restart()
        at_restart = a.evaluate(OWN_CHART_POINTS)
        wait_for(a, lambda: len(store.history(run_id)) >= at_restart + 3, "the run's epochs did not reach the store")
        b.wait_for_function(f"({WATCHED_CHART_POINTS})() >= {at_restart + 3}")
        assert store.run(run_id)["status"] == "running"
        no_exception(a)
        no_exception(b)
        shot(b, "2-b-watches-after-restart")
        press(a, "train_stop")
        wait_for(a, lambda: store.run(run_id)["status"] == "stopped", "A's Stop did not stop the run")
        (run,), epochs = store.runs(run_id=run_id), [e["epoch"] for e in store.history(run_id)]
        assert epochs == list(range(1, run["epochs"] + 1)) and run["epochs"] >= at_restart + 3, epochs
        assert store.last_checkpoint(run_id)["epoch"] == run["epochs"]
        a.wait_for_function(f"({OWN_CHART_POINTS})() === {run['epochs']}")  # A's page shows the same curve

        # B generates from A's run (its checkpoint from the database) while C's tune worker runs its trials.
        go(b, "Runs")
        press(b, "runs_generate")  # the run picked on this page since the stop: A's, the only one so far
        worker = tune_worker(homes["c"], url)
        b.wait_for_selector("h1:has-text('Generate')")
        settle(b)
        text = generated(b)
        assert text.startswith(PREFIX) and len(text) == len(PREFIX) + 50, text
        assert b.get_by_text(f"(id {run_id})").count() > 0  # the model's caption names the run
        no_exception(b)
        shot(b, "3-b-generates")

        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
        trials = json.loads(out)["trials"]
        assert len(trials) == 2 and all(t["run_id"] for t in trials), trials
        best = min((t for t in trials if t["state"] == "COMPLETE"), key=lambda t: t["value"])
        for t in trials:
            assert store.run(t["run_id"])["study"] == "shared" and store.history(t["run_id"])

        # Both servers' Tune pages show the worker's study: a curve per trial, the best trial's run.
        for name, pg in (("a", a), ("b", b)):
            go(pg, "Tune")
            pg.wait_for_function(f"({TRIAL_CURVES})() === 2")
            pg.locator(".st-key-tune_best").get_by_text(f"Run {best['run_id']}").wait_for()
            no_exception(pg)
            pg.locator(".st-key-tune_intermediate").scroll_into_view_if_needed()
            shot(pg, f"4-{name}-tune")
        press(b, "tune_generate")
        b.wait_for_selector("h1:has-text('Generate')")
        settle(b)
        text = generated(b)
        assert text.startswith(PREFIX) and len(text) == len(PREFIX) + 50, text
        assert b.get_by_text(f"(id {best['run_id']})").count() > 0
        no_exception(b)
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()

    # Every checkpoint is in the database: no machine holds a checkpoint file.
    for home in homes.values():
        assert list(home.glob("checkpoints/*/*.pt")) == [], home
        assert not (home / "runs.sqlite").exists(), home
