"""A hyperparameter search on Optuna (no streamlit here): its study, sampler and pruner, and how a trial ends.

A study lives in a relational database that any number of workers share (SQLite by default, next to
the run store; PostgreSQL or any URL SQLAlchemy accepts for workers on several machines). Each trial
trains through a `Runner` (the app's training child process; with `Search.parallel` > 1, K trials
batched in the worker's own process, `charrnn.tune.parallel`) holding a device lock, and is recorded
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

import warnings

import optuna

from charrnn.baseline import baseline
from charrnn.data import split_heldout
from charrnn.evaluate import evals_per_epoch
from charrnn.tune.plan import Plan, Search
from charrnn.tune.space import FieldError, grid, trial_corpus
from charrnn.tune.storage import differences, open_storage, stored_settings

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
TPE_STARTUP = 4  # random trials before TPE models the results
MEDIAN_STARTUP = 2  # trials that must finish before the median pruner judges another
MIN_EVALS = 5  # held-out figures a trial gets by default: enough for the pruner to judge it on its way
YARDSTICK_ORDER = 5  # the n-gram the held-out charts compare with (`charrnn.baseline`)


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


def open_study(plan: Plan) -> optuna.Study:
    """Create the plan's study, or join it when it exists with the same settings; ValueError otherwise."""
    search, corpus = plan.search, plan.corpus
    storage = open_storage(plan.storage, search.heartbeat)
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
