"""One background training run, for the dashboard (no streamlit here).

A `Runner` owns at most one run at a time: a daemon thread calls `charrnn.recorder.train_recorded`
(so every run lands in the run store, checkpointed, and a stopped one can be resumed), appends
every finished epoch to a history under a lock, and checks a stop event between minibatches.
Readers (the UI, polling about once a second) take a `snapshot()`; they never touch the thread's
tensors, so the run adds no host syncs beyond the one per epoch that `train` already does.

An optional device lock (a `threading.Lock` or `Semaphore` shared by every session) keeps two runs
from fighting over one device: it is taken without blocking, and a busy device makes `start`
refuse with status "busy" instead of queueing or crashing.
"""

import threading
from dataclasses import dataclass, field

from charrnn.batches import SeqDataLoader
from charrnn.data import Corpus
from charrnn.device import resolve_device
from charrnn.recorder import train_recorded
from charrnn.store import RunStore
from charrnn.train import EpochStats, TrainConfig, check_fits

STATUSES = ("idle", "running", "finished", "stopped", "diverged", "failed", "busy")


@dataclass
class RunSnapshot:
    """A consistent copy of a run's state at one moment."""

    status: str = "idle"  # one of STATUSES
    message: str = ""  # why it failed, diverged or was refused
    history: list[EpochStats] = field(default_factory=list)
    config: TrainConfig | None = None
    summary: str = ""  # the book's closing line, once the run has ended
    model: object = None  # the trained RNNScratch, only once the run has ended
    vocab: object = None
    corpus: dict | None = None  # fingerprint of the training text
    run_id: str | None = None  # the run in the store, once it is recorded there

    @property
    def running(self) -> bool:
        return self.status == "running"


class Runner:
    """Starts, stops and reports one training run on a background thread."""

    def __init__(self, store: RunStore | None = None):
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._snap = RunSnapshot()
        self._store = store  # None: the default store (CHARRNN_HOME), opened when a run starts

    def start(
        self,
        corpus: Corpus,
        config: TrainConfig,
        device_lock=None,
        resume: str | None = None,
        checkpoint_every: int = 50,
        name: str | None = None,
    ) -> bool:
        """Start a run on `corpus` (or continue the stored run `resume` with its own config; only the
        device of `config` counts then); False (status "busy") when another run holds `device_lock`.

        Raises ValueError naming the field when the config or the text cannot work, before any
        thread starts, so the caller can show it next to the form.
        """
        config.validate()
        SeqDataLoader(corpus.corpus, config.batch_size, config.num_steps, config.sampling)  # too short -> ValueError
        if resume is None:  # refuse what the device's memory cannot hold before anything is allocated
            check_fits(config, len(corpus.vocab), resolve_device(config.device))
        if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be a positive integer, not {checkpoint_every!r}")
        with self._lock:
            if self.running():
                return False
            if device_lock is not None and not device_lock.acquire(blocking=False):
                # The previous run's results stay readable; only the status says why nothing started.
                self._snap.status = "busy"
                self._snap.message = (
                    f"Device busy: another session is training on {config.device}. "
                    "Wait for it to finish, or pick another device."
                )
                return False
            self._stop.clear()
            self._snap = RunSnapshot(
                status="running", config=config, vocab=corpus.vocab, corpus=corpus.fingerprint(), run_id=resume
            )
            options = dict(resume=resume, checkpoint_every=checkpoint_every, name=name)
            self._thread = threading.Thread(
                target=self._work, args=(corpus, config, device_lock, options), name="charrnn-train", daemon=True
            )
            self._thread.start()
        return True

    def _work(self, corpus, config, device_lock, options):
        try:
            store = self._store if self._store is not None else RunStore()
            _, result = train_recorded(
                store,
                corpus,
                config,
                on_epoch=self._on_epoch,
                should_stop=self._stop.is_set,
                on_start=lambda run_id: self._on_start(store, run_id),
                **options,
            )
            with self._lock:
                self._snap.status = "stopped" if result.stopped else "finished"
                if getattr(result, "diverged", False):
                    self._snap.status = "diverged"
                    self._snap.message = (
                        f"The loss became inf or NaN at epoch {result.history[-1].epoch}: lower lr, "
                        "or turn clipping on (clip theta 1 is the book's)."
                    )
                self._snap.config = result.config  # a resumed run trains with its stored config
                self._snap.summary = result.summary()
                self._snap.model = result.model.eval()
        except Exception as e:  # reported to the user through the snapshot; the thread must not die silently
            with self._lock:
                self._snap.status = "failed"
                self._snap.message = f"Training failed: {type(e).__name__}: {e}"
        finally:
            if device_lock is not None:
                device_lock.release()

    def _on_start(self, store: RunStore, run_id: str):
        """The run is in the store: a resumed run's curve so far becomes the start of this history."""
        earlier = [EpochStats(**row) for row in store.history(run_id)]
        with self._lock:
            self._snap.run_id = run_id
            self._snap.history = earlier + self._snap.history

    def _on_epoch(self, stats: EpochStats):
        with self._lock:
            self._snap.history.append(stats)

    def stop(self):
        """Ask the run to end at the next minibatch; returns at once."""
        self._stop.set()

    def join(self, timeout: float | None = None):
        if self._thread is not None:
            self._thread.join(timeout)

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._snap.status == "running"

    def snapshot(self) -> RunSnapshot:
        with self._lock:
            s = self._snap
            return RunSnapshot(
                status=s.status,
                message=s.message,
                history=list(s.history),
                config=s.config,
                summary=s.summary,
                model=s.model,
                vocab=s.vocab,
                corpus=s.corpus,
                run_id=s.run_id,
            )
