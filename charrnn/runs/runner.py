"""One background training run, for the dashboard (no streamlit here).

A `Runner` owns at most one run at a time. The run trains in a child process (`charrnn.runs.worker`)
whose main thread calls `charrnn.runs.recorder.train_recorded`: every run lands in the run store,
checkpointed, and a stopped one can be resumed. A watcher thread in this process reads the finished
epochs from a pipe into a history under a lock; `stop()` sends SIGTERM, which the child turns into
a stop between minibatches. Readers (the UI, polling about once a second) take a `snapshot()`.

Why a process and not a thread: on the CPU, PyTorch's MKL/OpenMP kernels run up to 30% slower when
called from a secondary thread (measured here: a (32, 512) `tanh_` took 66 us on a thread against
23 us on a main thread), and a thread shares the GIL with the Streamlit server. A child's main thread
trains as fast as the CLI. The child stops by itself if this process goes away.

An optional `DeviceQueue` (one per device, shared by every session) keeps two runs from fighting
over one device: a run takes the free device at once; on a busy one `start(..., queue=True)` waits
in line (status "queued", first come first served) and starts by itself when its turn comes, and
`start(..., queue=False)` refuses with status "busy".
"""

import argparse
import dataclasses
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from charrnn.batches import SeqDataLoader
from charrnn.data import Corpus
from charrnn.device import describe, resolve_device
from charrnn.runs import demo
from charrnn.runs.recorder import load_stored
from charrnn.runs.store import RunStore
from charrnn.train import EpochStats, TrainConfig, check_fits

PROJECT = str(Path(__file__).resolve().parents[1])  # the folder holding charrnn/, for the child's imports


def child_env() -> dict:
    """This process's environment, with charrnn importable whatever the working directory."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [PROJECT, os.environ.get("PYTHONPATH")]))}


MAX_NAME = 200  # characters of a run's name, in the app and for `train --name`


class RunNameError(ValueError, argparse.ArgumentTypeError):
    """A run name that is empty or too long (a ValueError for the app, argparse's one-line error for the CLI)."""


def run_name(text: str) -> str:
    """A run's name as a user gives it (the app's field, `train --name`): 1 to MAX_NAME characters once
    the spaces around it are dropped."""
    name = text.strip()
    if not name or len(name) > MAX_NAME:
        raise RunNameError(f"a run's name must be 1 to {MAX_NAME} characters, not {len(name):,}")
    return name


STATUSES = ("idle", "queued", "running", "finished", "stopped", "diverged", "failed", "busy", "cancelled")


@dataclass
class RunSnapshot:
    """A consistent copy of a run's state at one moment."""

    status: str = "idle"  # one of STATUSES
    message: str = ""  # why it failed, diverged or was refused
    history: list[EpochStats] = field(default_factory=list)
    config: TrainConfig | None = None
    summary: str = ""  # the book's closing line, once the run has ended
    model: object = None  # the trained ScratchModel, only once the run has ended
    vocab: object = None
    corpus: dict | None = None  # fingerprint of the training text
    run_id: str | None = None  # the run in the store, once it is recorded there

    @property
    def running(self) -> bool:
        """In flight: training, or waiting in line for the device (it will train by itself)."""
        return self.status in ("running", "queued")


class Runner:
    """Starts, stops and reports one training run in a background process."""

    def __init__(self, store: RunStore | None = None, on_record: Callable[[str], object] | None = None):
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None  # the training process of the current run
        self._stop_asked = False
        self._thread: threading.Thread | None = None
        self._snap = RunSnapshot()
        self._device = None  # the DeviceQueue of the current run
        self._store = store  # None: the default store (CHARRNN_HOME), opened when a run starts
        # Every run id this runner started or resumed, caught as the run enters the store (the watcher
        # thread), so it is known even when nobody looked meanwhile. Replaced, never changed in place:
        # readers need no lock.
        self.started: frozenset[str] = frozenset()
        self._on_record = on_record  # called (watcher thread) with each run id as it enters the store
        self.idle_since = time.monotonic()  # when its last run ended (or it was made): for whoever keeps runners

    def start(
        self,
        corpus: Corpus,
        config: TrainConfig,
        device_lock=None,
        resume: str | None = None,
        checkpoint_every: int = 50,
        name: str | None = None,
        queue: bool = False,
    ) -> bool:
        """Start a run on `corpus` (or continue the stored run `resume` with its own config; only the
        device of `config` counts then). When another run holds `device_lock` (a DeviceQueue): with
        `queue`, wait in line (status "queued") and start when the device frees; else False ("busy").

        Raises ValueError naming the field when the config or the text cannot work, before any
        process starts, so the caller can show it next to the form.
        """
        config.validate()
        demo.require_caps(config, len(corpus), len(corpus.vocab))  # in demo mode only: every run of the app
        SeqDataLoader(corpus.corpus, config.batch_size, config.num_steps, config.sampling)  # too short -> ValueError
        if resume is None:  # refuse what the device's memory cannot hold before anything is allocated
            check_fits(config, len(corpus.vocab), resolve_device(config.device))
        if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be a positive integer, not {checkpoint_every!r}")
        # Opened here, not in the thread: a store that cannot be opened refuses the start with its
        # message, instead of a run that fails unseen after the page showed it as running.
        store = self._store if self._store is not None else RunStore()
        with self._lock:
            if self.running():
                return False
            waits = device_lock is not None and not device_lock.try_acquire(self)
            if waits and not queue:
                # The previous run's results stay readable; only the status says why nothing started.
                self._snap.status = "busy"
                self._snap.message = (
                    f"Device busy: another session is training on {describe(resolve_device(config.device))}. "
                    "Wait for it to finish, or pick another device."
                )
                return False
            self._stop_asked = False
            self._snap = RunSnapshot(
                status="queued" if waits else "running",
                config=config,
                vocab=corpus.vocab,
                corpus=corpus.fingerprint(),
                run_id=resume,
            )
            self._device = device_lock
            options = dict(resume=resume, checkpoint_every=checkpoint_every, name=name)
            args = (store, corpus, config, device_lock if waits else None, options)
            self._thread = threading.Thread(target=self._queue_then_work, args=args, name="charrnn-train", daemon=True)
            self._thread.start()
        return True

    def _queue_then_work(self, store, corpus, config, line, options):
        """The watcher thread: wait in `line` (a DeviceQueue) when the device was busy, then train."""
        try:
            self._queue_then_train(store, corpus, config, line, options)
        finally:
            self.idle_since = time.monotonic()

    def _queue_then_train(self, store, corpus, config, line, options):
        if line is not None:
            if not line.acquire(self, cancelled=lambda: self._stop_asked):
                with self._lock:
                    self._snap.status = "cancelled"
                    self._snap.message = "Taken out of the queue; nothing was trained."
                return
            with self._lock:
                self._snap.status = "running"
        self._work(store, corpus, config, self._device, options)

    @property
    def device_queue(self):
        """The DeviceQueue of the current (or last) run, None without one."""
        return self._device

    def place(self) -> int | None:
        """This run's place in the device's line (1 = next), None when it is not waiting."""
        return self._device.place(self) if self._device is not None else None

    def _work(self, store, corpus, config, device_lock, options):
        """Start the training process, relay its messages, release the device."""
        try:
            read_fd, write_fd = os.pipe()
            with self._lock:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "charrnn.runs.worker", str(write_fd)],
                    stdin=subprocess.PIPE,
                    pass_fds=(write_fd,),
                    env=child_env(),
                )
                if self._stop_asked:  # Stop pressed while the process was being created
                    self._proc.terminate()
            os.close(write_fd)
            job = {"home": str(store.home), "corpus": corpus, "config": config, "options": options}
            try:
                pickle.dump(job, self._proc.stdin)
                self._proc.stdin.close()
            except BrokenPipeError:
                pass  # it ended before reading its job (stopped at once): the loop below sees the end
            ended = None
            with os.fdopen(read_fd, "rb") as messages:
                while ended is None:
                    try:
                        kind, payload = pickle.load(messages)
                    except (EOFError, pickle.UnpicklingError):  # the process ended without a last word
                        code = self._proc.wait()
                        if self._stop_asked:  # stopped before it could set up its own stop
                            ended = ("done", {"status": "stopped", "summary": "", "config": config})
                        else:
                            ended = ("failed", f"the training process ended unexpectedly (exit code {code})")
                        continue
                    if kind == "start":
                        self._on_start(*payload)
                    elif kind == "epoch":
                        self._on_epoch(payload)
                    else:
                        ended = (kind, payload)
            self._proc.wait(timeout=30)
            self._finish(store, *ended)
        except Exception as e:  # reported to the user through the snapshot; the thread must not die silently
            with self._lock:
                self._snap.status = "failed"
                self._snap.message = f"Training failed: {type(e).__name__}: {e}"
        finally:
            if device_lock is not None:
                device_lock.release()

    def _finish(self, store: RunStore, kind: str, payload):
        if kind == "failed":
            with self._lock:
                self._snap.status = "failed"
                self._snap.message = f"Training failed: {payload}"
            return
        # The trained model comes back through the run's last checkpoint (written at the end, or
        # at the last finished epoch of a stopped or diverged run).
        last = store.last_checkpoint(self._snap.run_id) if self._snap.run_id else None
        model = None
        if last is not None:
            model, _, _ = load_stored(store, self._snap.run_id, last["epoch"], resolve_device(payload["config"].device))
        with self._lock:
            self._snap.status = payload["status"]
            if payload["status"] == "diverged":
                self._snap.message = (
                    f"The perplexity became infinite at epoch {self._snap.history[-1].epoch}: lower lr, "
                    "or turn clipping on (clip theta 1 is the book's)."
                )
            self._snap.config = payload["config"]  # a resumed run trains with its stored config
            self._snap.summary = payload["summary"]
            self._snap.model = model

    def _on_start(self, run_id: str, rows: list[dict]):
        """The run is in the store: a resumed run's curve so far becomes the start of this history."""
        earlier = [EpochStats(**row) for row in rows]
        with self._lock:
            self.started = self.started | {run_id}
            self._snap.run_id = run_id
            self._snap.history = earlier + self._snap.history
        if self._on_record is not None:
            self._on_record(run_id)  # e.g. the app remembering whose run it is; it must not raise

    def _on_epoch(self, stats: EpochStats):
        with self._lock:
            self._snap.history.append(stats)

    def stop(self):
        """Ask the run to end at the next minibatch; returns at once."""
        with self._lock:
            self._stop_asked = True
            if self._proc is not None and self._proc.poll() is None:
                self._proc.send_signal(signal.SIGTERM)

    @property
    def pid(self) -> int | None:
        """The training process of the current (or last) run."""
        return self._proc.pid if self._proc is not None else None

    def join(self, timeout: float | None = None):
        if self._thread is not None:
            self._thread.join(timeout)

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._snap.running

    def snapshot(self) -> RunSnapshot:
        with self._lock:
            return dataclasses.replace(self._snap, history=list(self._snap.history))
