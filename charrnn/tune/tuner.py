"""One worker's trials of a `Search`, checked into a `Plan` (`charrnn.tune.plan`) by `Tuner.prepare`: each trained
through a `Runner` (the app's training child process) holding a device lock, followed epoch by epoch for the
pruner, and ended as `charrnn.tune.study` describes; with `Search.parallel` > 1, K trials at a time batched in
this process (`charrnn.tune.parallel`)."""

import math
import time
import warnings
from contextlib import nullcontext

import optuna

from charrnn.evaluate import report_step
from charrnn.runs.runner import Runner
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig
from charrnn.tune.parallel import run_parallel
from charrnn.tune.plan import make_plan
from charrnn.tune.space import trial_config, trial_corpus
from charrnn.tune.study import open_study

POLL = 0.05  # seconds between looks at the training run: the pruner must answer before the next epoch ends


class Stopped(Exception):
    """The user stopped the search during this trial."""


class TrialFailed(Exception):
    """The trial's training failed; the study goes on with the next trial."""


class Tuner:
    """Runs one worker's trials of a `Search` on `runner`, holding `device_lock` while a trial trains.

    `run()` blocks (the CLI calls it on its main thread, the app on a thread of its own); `stop()`
    from any thread ends the current trial and the search. `on_trial(study, frozen_trial)` is called
    after each of this worker's trials. `spawning` is a context manager wrapped around the start of
    each training process (the CLI's keeps Ctrl-C away from the child: the parent stops it).
    """

    def __init__(self, search, corpus, runner=None, device_lock=None, store=None, on_trial=None, spawning=None):
        self.search, self.corpus = search, corpus
        self.store = store or RunStore()
        self.runner = runner or Runner(self.store)
        self.device_lock, self.on_trial = device_lock, on_trial
        self.spawning = spawning or nullcontext
        self.stop_asked = False
        self.quit_asked = False  # a second Ctrl-C: --parallel quits within the minibatch
        self.training = False  # whether the runner trains a trial of this search now (`stop` stops only that)
        self.study: optuna.Study | None = None

    def prepare(self, device) -> optuna.Study:
        """Check the search whole (`make_plan`), then open (or join) its study; a FieldError saying what is wrong."""
        self.study = open_study(make_plan(self.search, self.corpus, device))
        return self.study

    def run(self) -> optuna.Study:
        """This worker's trials, one after another, then the retries of trials whose worker died that
        nobody has run yet; returns the study (with every worker's trials). Only a prepared (checked) search runs."""
        if self.study is None:
            raise RuntimeError("Tuner.run before Tuner.prepare: a search runs only once it is checked")
        if self.search.parallel > 1:
            return run_parallel(self)
        trials = self.search.trials
        while trials and not self.stop_asked:
            self.study.optimize(self.objective, n_trials=trials, catch=(Stopped, TrialFailed), callbacks=[self._after])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)  # optimize checks only before each trial
            trials = len(self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
        return self.study

    def request_stop(self):
        """Ask to stop (safe in a signal handler: it takes no lock); the trial loop stops the run."""
        self.stop_asked = True

    def stop(self):
        """Stop the search and the trial it trains now; a runner that trains no trial of it is left alone
        (the app's runner is its visitor's, and may train their own run between two trials)."""
        self.stop_asked = True
        if self.training:
            self.runner.stop()

    def _after(self, study, trial):
        if self.stop_asked:
            study.stop()
        if self.on_trial is not None:
            self.on_trial(study, trial)

    def objective(self, trial: optuna.Trial) -> float:
        for key, value in (("run_id", None), ("epochs", 0), ("reason", "")):  # a retried trial inherits these
            trial.set_user_attr(key, value)
        if self.stop_asked:
            self._stopped(trial)
        config = trial_config(self.search.space, self.search.base, trial)
        self._start(config, f"{self.search.study} trial {trial.number}")  # refused: nothing of ours to stop
        try:
            values, pruned = self._follow(trial, self.runner)
        except BaseException:  # whatever went wrong here, the training process must not outlive the trial
            self.runner.stop()
            raise
        finally:
            self.training = False
        snap = self.runner.snapshot()
        trial.set_user_attr("epochs", len(snap.history))
        if snap.status in ("stopped", "cancelled") and self.stop_asked and not pruned:
            self._stopped(trial)
        if pruned or snap.status == "diverged":
            reason = pruned or snap.message
            if pruned and snap.run_id:
                self.store.finish(snap.run_id, "pruned", reason)
            trial.set_user_attr("reason", reason)
            raise optuna.TrialPruned(reason)
        if snap.status != "finished" or not values:
            reason = snap.message or f"the run ended {snap.status}"
            if snap.status == "finished":
                reason = "no held-out perplexity was reported; is val_tokens above 0?"
            trial.set_user_attr("reason", reason)
            raise TrialFailed(reason)
        return min(values)

    def _start(self, config: TrainConfig, name: str):
        """Start the trial's run: it waits in line when the device is busy (the app's lock)."""
        run, last_pid, corpus = self.runner, self.runner.pid, trial_corpus(self.corpus, config.max_tokens)
        with self.spawning():
            if not run.start(
                corpus, config, self.device_lock, checkpoint_every=config.num_epochs, name=name, queue=True
            ):
                raise RuntimeError(run.snapshot().message or "this session is already training; stop it first")
            self.training = True
            while run.pid == last_pid and run.snapshot().status == "running" and run.running():
                time.sleep(0.01)  # until the training process exists (`spawning` covers its start)

    def _follow(self, trial, run) -> tuple[list[float], str]:
        """Report each held-out perplexity as the run trains; stop it when the pruner says so, or
        after the epoch in progress when the user asks. Returns (the values reported, why it was
        pruned or "")."""
        values, seen, pruned, tagged, stop_after = [], 0, "", False, None
        while True:
            alive = run.running()
            snap = run.snapshot()
            if snap.run_id and not tagged:
                trial.set_user_attr("run_id", snap.run_id)
                self.store.tag_run(snap.run_id, self.search.study, trial.number)
                tagged = True
            evaluations = [p for s in snap.history[seen:] for p in [*s.val_points, (s.epoch, s.val_perplexity)]]
            for position, value in evaluations:  # inside an epoch (a cadence of 1/k epoch), then at its end
                every, epochs = snap.config.eval_every, snap.config.num_epochs
                if value is None or pruned:
                    continue
                if not math.isfinite(value):  # the model broke down: as good as diverged
                    pruned = f"the held-out perplexity became infinite at epoch {position:g}"
                    run.stop()
                    continue
                values.append(value)
                trial.report(value, report_step(position, every))
                if position < epochs and trial.should_prune():  # at the last, it is done
                    pruned = (
                        f"pruned by the {self.search.pruner} pruner at epoch {position:g} of "
                        f"{epochs} (held-out perplexity {value:.3f})"
                    )
                    run.stop()
            seen = len(snap.history)
            if self.stop_asked and stop_after is None:
                stop_after = seen + 1  # the epoch in progress
            if stop_after is not None and (seen >= stop_after or snap.status == "queued"):
                run.stop()
            if not alive:
                run.join()
                return values, pruned
            time.sleep(POLL)

    def _stopped(self, trial):
        trial.set_user_attr("stopped", "stopped by the user")
        trial.set_user_attr("reason", "stopped by the user")
        self.study.stop()
        raise Stopped("stopped by the user")
