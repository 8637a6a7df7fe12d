"""`tune --parallel K`: one worker asks Optuna for K trials at once and trains them batched.

The worker asks the study for K trials (ask-and-tell), groups them by what members trained together
must share (`charrnn.tune.batched.SHARED`: the shapes, mostly) and trains each group with `train_batched`
in this process, on its main thread: one batched step instead of K small ones, and no training
process to start per trial. Each member is a run of its own in the run store ("<study> trial <n>",
tagged with its study and number), reports each held-out perplexity to its own trial, and leaves its
group at an epoch's end when the pruner says so while the others go on. Each trial is told its own
result as it ends, in the states and with the reasons of a trial trained alone (`charrnn.tune.study`).
A group holds the device lock while it trains. Each trial sends its heartbeat from when it is asked
until it is told, so a trial whose worker died is failed and retried as with one trial at a time (a
retry is asked like any other trial).

Trials asked together are sampled before any of them reports, so TPE runs with `constant_liar`
(see `charrnn.tune.study.make_sampler`): a trial in flight counts as a poor one, and K trials asked at once
spread out instead of piling onto one point. Ctrl-C ends every member after the epoch in progress
(each FAIL with user attr "stopped", each run "stopped" with a checkpoint).
"""

import math
import warnings
from dataclasses import dataclass, field

import optuna

# What Study.optimize uses to keep each trial's heartbeat: ask-and-tell has to start them itself.
from optuna.storages._heartbeat import get_heartbeat_thread

from charrnn.data import split_heldout
from charrnn.device import resolve_device
from charrnn.runs.recorder import run_checkpoint_bytes
from charrnn.train import TrainConfig
from charrnn.tune.batched import SHARED, MemberResult, train_batched
from charrnn.tune.space import grid, trial_config, trial_corpus

WAITING = (optuna.trial.TrialState.WAITING,)


@dataclass
class Member:
    """One trial of a group, as it trains."""

    trial: optuna.Trial
    config: TrainConfig
    run_id: str = ""
    values: list[float] = field(default_factory=list)  # the held-out perplexities reported
    reason: str = ""  # why it is pruned, once it is
    stopped: bool = False  # ended by the user's stop
    epochs: int = 0  # epochs trained so far
    told: bool = False
    beat: object = None  # its heartbeat thread, from when it is asked until it is told


def run_parallel(tuner) -> optuna.Study:
    """`Tuner.run` for `search.parallel` > 1: this worker's trials, K at a time, then the retries of
    trials whose worker died that nobody has run yet; returns the study."""
    study, search = tuner.study, tuner.search
    left = search.trials
    while not tuner.stop_asked:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # as Study.optimize does before each trial
        waiting = len(study.get_trials(deepcopy=False, states=WAITING))
        n = min(search.parallel, left or waiting)
        if search.sampler == "grid":  # asked beyond its grid, the grid sampler would repeat points
            n = min(n, waiting + _grid_left(search, study))
        if n == 0:
            break
        left = max(0, left - n)
        members = []
        try:
            for _ in range(n):  # every trial asked keeps a heartbeat, also while an earlier group trains
                members.append(_ask(tuner))
            groups: dict[tuple, list[Member]] = {}
            for m in members:
                groups.setdefault(tuple(getattr(m.config, name) for name in SHARED), []).append(m)
            for group in groups.values():
                if tuner.stop_asked:
                    for m in group:
                        _tell_stopped(tuner, m)
                else:
                    _train_group(tuner, group)
        finally:
            for m in members:
                m.beat.join()
    return study


def _grid_left(search, study) -> int:
    """The grid's points that no trial has taken yet (a trial takes its point when it is asked)."""
    points = math.prod(len(values) for values in grid(search.space).values())
    trials = study.get_trials(deepcopy=False)
    return max(0, points - len({tuple(sorted(t.params.items())) for t in trials if t.params}))


def _ask(tuner) -> Member:
    with warnings.catch_warnings():  # the heartbeat is kept here, as optimize would keep it
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed", UserWarning)
        trial = tuner.study.ask()
    for key, value in (("run_id", None), ("epochs", 0), ("reason", "")):  # a retried trial inherits these
        trial.set_user_attr(key, value)
    m = Member(trial, trial_config(tuner.search.space, tuner.search.base, trial))
    m.beat = get_heartbeat_thread(trial._trial_id, tuner.study._storage)
    m.beat.start()
    return m


def _train_group(tuner, group: list[Member]) -> None:
    """Train one group batched, recording each member as a run and telling each trial as it ends.
    A failure fails the group's trials that are not told yet and the search goes on; Ctrl-C (a second
    one) marks their runs "interrupted" and ends the search."""
    store, search = tuner.store, tuner.search
    corpus = trial_corpus(tuner.corpus, group[0].config.max_tokens)  # max_tokens is SHARED in a group
    split = split_heldout(corpus, group[0].config.val_tokens)
    ticket, lock = object(), tuner.device_lock
    if lock is not None and not lock.acquire(ticket, cancelled=lambda: tuner.stop_asked):
        for m in group:
            _tell_stopped(tuner, m)
        return
    try:
        device = str(resolve_device(group[0].config.device))
        for m in group:
            name = f"{search.study} trial {m.trial.number}"
            m.run_id = store.create_run(m.config, corpus.fingerprint(), device, name)
            store.tag_run(m.run_id, search.study, m.trial.number)
            m.trial.set_user_attr("run_id", m.run_id)

        def on_epoch(i, stats):
            m = group[i]
            store.add_epoch(m.run_id, stats)
            m.epochs = stats.epoch
            value = stats.val_perplexity
            if value is None or m.reason:
                return
            if not math.isfinite(value):  # the model broke down: as good as diverged
                m.reason = f"the held-out perplexity became infinite at epoch {stats.epoch}"
            else:
                m.values.append(value)
                m.trial.report(value, stats.epoch)

        stop_at = {}  # epoch -> whether the user's stop ends it, asked once per epoch: the group stops as one

        def should_prune(i, stats) -> bool:
            m = group[i]
            if stop_at.setdefault(stats.epoch, tuner.stop_asked):
                m.stopped = True
            elif not m.reason and stats.val_perplexity is not None and m.trial.should_prune():
                m.reason = (
                    f"pruned by the {search.pruner} pruner at epoch {stats.epoch} of {m.config.num_epochs} "
                    f"(held-out perplexity {stats.val_perplexity:.3f})"
                )
            return m.stopped or bool(m.reason)

        configs = [m.config for m in group]
        on_end = lambda i, result: _end(tuner, corpus, group[i], result)  # noqa: E731
        quit_now = lambda: tuner.quit_asked  # noqa: E731
        train_batched(split.train, corpus.vocab, configs, on_epoch, split.val, quit_now, should_prune, on_end)
        if tuner.quit_asked:
            raise KeyboardInterrupt
    except Exception as e:
        _fail(tuner, group, "failed", f"{type(e).__name__}: {e}")
    except BaseException:
        _fail(tuner, group, "interrupted", "interrupted (Ctrl-C) during an epoch")
        raise
    finally:
        if lock is not None:
            lock.release()


def _end(tuner, corpus, m: Member, result: MemberResult) -> None:
    """Checkpoint a member that ended (a diverged one at its last finite epoch), finish its run, tell its trial."""
    store, TS, history = tuner.store, optuna.trial.TrialState, result.history
    if result.status == "stopped":  # quit within an epoch: its weights match no iterator state, no checkpoint
        return _fail(tuner, [m], "interrupted", "interrupted (Ctrl-C) during an epoch")
    if history and result.status != "diverged":
        epoch, loader_state = history[-1].epoch, result.loader.state_dict()
        data = run_checkpoint_bytes(m.run_id, result.model, corpus, m.config, epoch, loader_state)
        store.add_checkpoint(m.run_id, epoch, data)
    elif result.last_good is not None:  # diverged: its last finite epoch, as a run trained alone keeps
        epoch, model, loader_state = result.last_good
        store.add_checkpoint(
            m.run_id, epoch, run_checkpoint_bytes(m.run_id, model, corpus, m.config, epoch, loader_state)
        )
    if m.stopped:
        store.finish(m.run_id, "stopped", "stopped by the user")
        return _tell_stopped(tuner, m)
    if result.status == "diverged":
        m.reason = f"the perplexity became infinite in epoch {history[-1].epoch}"
        store.finish(m.run_id, "diverged", m.reason)
    elif m.reason:
        store.finish(m.run_id, "pruned", m.reason)
    if m.reason:
        return _tell(tuner, m, TS.PRUNED, reason=m.reason)
    if not m.values:
        reason = "no held-out perplexity was reported; is val_tokens above 0?"
        store.finish(m.run_id, "failed", reason)
        return _tell(tuner, m, TS.FAIL, reason=reason)
    store.finish(m.run_id, "finished")
    return _tell(tuner, m, TS.COMPLETE, value=min(m.values))


def _fail(tuner, group: list[Member], status: str, reason: str) -> None:
    for m in group:
        if not m.told:
            if m.run_id:
                tuner.store.finish(m.run_id, status, reason)
            _tell(tuner, m, optuna.trial.TrialState.FAIL, reason=reason)


def _tell_stopped(tuner, m: Member) -> None:
    m.trial.set_user_attr("stopped", "stopped by the user")
    _tell(tuner, m, optuna.trial.TrialState.FAIL, reason="stopped by the user")


def _tell(tuner, m: Member, state, value=None, reason: str = "") -> None:
    m.trial.set_user_attr("epochs", m.epochs)
    if reason:
        m.trial.set_user_attr("reason", reason)
    m.beat.join()
    try:
        frozen = tuner.study.tell(m.trial, value if state == optuna.trial.TrialState.COMPLETE else None, state=state)
    except RuntimeError:
        # The grid sampler calls Study.stop() once its last point is told, which Optuna refuses outside
        # optimize(); the trial is told by then (run_parallel asks no point beyond the grid).
        frozen = next(t for t in tuner.study.get_trials(deepcopy=False) if t.number == m.trial.number)
        if not frozen.state.is_finished():
            raise
    m.told = True
    if tuner.on_trial is not None:
        tuner.on_trial(tuner.study, frozen)
