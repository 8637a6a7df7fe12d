"""A hyperparameter search on Optuna (no streamlit here): where studies live, and one worker's trials.

A study lives in a relational database that any number of workers share (SQLite by default, next to
the run store; PostgreSQL or any URL SQLAlchemy accepts for workers on several machines). Each trial
trains through a `Runner` (the app's training child process; with `Search.parallel` > 1, K trials
batched in the worker's own process, `charrnn.tune_parallel`) holding a device lock, and is recorded
in this machine's run store as "<study> trial <n>", tagged with its study and number; only the study
is shared. The objective is the held-out perplexity, the best seen during the trial; it is reported
at every evaluation so that the pruner can end a poor trial early.

How a trial ends, in the study and in the run store:
- complete: the best held-out perplexity is its value; the run is "finished".
- pruned: stopped by the pruner after its epoch (run "pruned", with the reason), or diverged (run
  "diverged"): a diverged trial is PRUNED with the reason as user attr "reason", never a value, so
  that the sampler learns to avoid its region.
- failed: the run failed (user attr "reason"), or the user stopped it (Stop, Ctrl-C): FAIL with user
  attr "stopped", because a stopped trial says nothing about its hyperparameters (a PRUNED one would
  count against them), and the study ends after it.
- a worker that dies (SIGKILL, a lost machine) stops sending heartbeats; the next worker to start a
  trial marks its trial FAIL and queues a retry with the same parameters (once).
"""

import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import optuna

from charrnn.baseline import baseline
from charrnn.data import split_heldout
from charrnn.evaluate import evals_per_epoch, report_step
from charrnn.runs.runner import Runner
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig
from charrnn.tune_parallel import check_parallel, run_parallel
from charrnn.tune_space import Dimension, FieldError, check_space, grid, space_text, trial_config, trial_corpus
from charrnn.tune_storage import check_study_name, differences, open_storage, stored_settings

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
TPE_STARTUP = 4  # random trials before TPE models the results
MEDIAN_STARTUP = 2  # trials that must finish before the median pruner judges another
POLL = 0.05  # seconds between looks at the training run: the pruner must answer before the next epoch ends
MIN_EVALS = 5  # held-out figures a trial gets by default: enough for the pruner to judge it on its way
YARDSTICK_ORDER = 5  # the n-gram the held-out charts compare with (`charrnn.baseline`)


@dataclass
class Search:
    """What one worker runs: `trials` trials of `study` in `storage` over `space`; every other
    hyperparameter is `base`'s, and `base.num_epochs` is each trial's budget."""

    study: str
    space: dict[str, Dimension]
    base: TrainConfig
    trials: int = 8
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int | None = None  # the sampler's; None: each worker draws its own
    storage: str | None = None  # a SQLAlchemy URL; None: CHARRNN_TUNE_STORAGE, else the SQLite file
    heartbeat: int = 10  # seconds between heartbeats; a trial silent for 3x that is failed and retried
    parallel: int = 1  # trials asked at once and trained batched (`charrnn.tune_parallel`)

    def settings(self, corpus) -> dict:
        """What every worker of one study must share (stored with the study, checked on joining)."""
        varied = {k for d in self.space.values() for k in d.setting(None)}  # lr_adam varies lr and optimizer
        fixed = {k: v for k, v in asdict(self.base).items() if k not in varied and k != "device"}
        return {"space": space_text(self.space), "fixed": fixed, "text": corpus.fingerprint()}


class Stopped(Exception):
    """The user stopped the search during this trial."""


class TrialFailed(Exception):
    """The trial's training failed; the study goes on with the next trial."""


def make_sampler(search: Search):
    if search.sampler == "grid":
        return optuna.samplers.GridSampler(grid(search.space), seed=search.seed)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=search.seed)
    liar = search.parallel > 1  # trials asked together: one in flight counts as poor, so they spread out
    return optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=TPE_STARTUP, constant_liar=liar)


def make_pruner(search: Search):
    """Median: after MEDIAN_STARTUP finished trials, a trial whose best held-out perplexity so far is
    worse than the median of earlier trials at the same epoch ends, from its second evaluation on
    (one evaluation is too noisy to judge). Hyperband: brackets from one evaluation to the budget.
    Neither acts at a trial's last epoch, so a trial needs evaluations before it (`pruning_note`)."""
    # A step is an epoch, or 1/k of one for a cadence of 1/k epoch (charrnn.evaluate.report_step).
    k = evals_per_epoch(search.base.eval_every)
    every, steps = max(1, int(search.base.eval_every)), search.base.num_epochs * k
    if search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP, n_warmup_steps=min(every + 1, steps))
    if search.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=min(every, steps), max_resource=steps)
    return optuna.pruners.NopPruner()


def eval_cadence(epochs: int) -> int:
    """The trials' evaluation cadence when the user gives none: at least MIN_EVALS held-out figures a trial."""
    return max(1, epochs // MIN_EVALS)


def yardstick(corpus, max_tokens: int, val_tokens: int) -> float | None:
    """The 5-gram's held-out perplexity on the split a trial of `max_tokens` is judged on (Kneser-Ney,
    `charrnn.baseline`); None when the training text is too short for it, or too long to count in memory."""
    try:
        split = split_heldout(trial_corpus(corpus, max_tokens), val_tokens)
        return baseline(split.train, split.val, YARDSTICK_ORDER, len(corpus.vocab), "kneser-ney").val_perplexity
    except ValueError:
        return None


def pruning_note(pruner: str, eval_every: int, epochs: int) -> str | None:
    """Why the pruner can never end a trial of `epochs` evaluated every `eval_every` epochs, or None when
    it can: median judges from the second evaluation on, hyperband from the first, never at the last."""
    first = {"median": 2 * eval_every, "hyperband": eval_every}.get(pruner)
    if first is None or first < epochs:
        return None
    n = len(range(int(eval_every), epochs, int(eval_every))) + 1  # on the cadence, and at the last epoch
    return (
        f"the {pruner} pruner cannot end a trial early: {epochs} epochs evaluated every {eval_every} give {n} "
        f"held-out figure{'s' * (n > 1)} a trial; give more epochs or evaluate more often"
    )


def open_study(search: Search, corpus) -> optuna.Study:
    """Create the study, or join it when it exists with the same settings; ValueError otherwise."""
    storage = open_storage(search.storage, search.heartbeat)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            storage=storage,
            study_name=search.study,
            direction="minimize",
            sampler=make_sampler(search),
            pruner=make_pruner(search),
            load_if_exists=True,
        )
    ours, theirs = search.settings(corpus), stored_settings(study)
    if theirs is None and study.trials:
        raise FieldError("study", f"study {search.study!r} was not made by charrnn tune; use another study name")
    if theirs is None:
        study.set_user_attr("charrnn", ours)
    elif theirs != ours:
        raise FieldError(
            "study",
            f"study {search.study!r} already exists with other settings ({differences(ours, theirs)}); "
            "use its settings to join it, or another study name",
        )
    return study


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
        """Check every point of the space, then open (or join) the study; a FieldError saying what is wrong."""
        search = self.search
        for field, value in (("trials", search.trials), ("epochs", search.base.num_epochs)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise FieldError(field, f"{field} must be a positive integer, not {value!r}")
        if not isinstance(search.base.val_tokens, int) or search.base.val_tokens < 2:
            raise FieldError("val_tokens", "val_tokens must be at least 2: trials are judged on the held-out text")
        check_study_name(search.study)
        check_space(search.space, search.base, self.corpus, device)
        check_parallel(search, self.corpus, device)
        self.study = open_study(self.search, self.corpus)
        return self.study

    def run(self) -> optuna.Study:
        """This worker's trials, one after another, then the retries of trials whose worker died that
        nobody has run yet; returns the study (with every worker's trials)."""
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
