"""The training process of the app's `Runner`: `python -m charrnn.runs.worker FD`.

It reads one pickled job (run store folder, corpus, config, options) from stdin, trains it with
`train_recorded` on its own main thread, and writes pickled `(kind, payload)` messages to the file
descriptor FD: ("start", (run_id, earlier epochs)), ("epoch", EpochStats) for every epoch, then
("done", {...}) or ("failed", message). SIGTERM asks it to stop at the next minibatch; it also
stops when the process that started it goes away. It is a module of its own, not a
multiprocessing target, so that the child never re-imports the parent's `__main__` (under
Streamlit, that would be the app script).
"""

import os
import pickle
import signal
import sys
import threading

from charrnn.runs.recorder import train_recorded
from charrnn.runs.store import RunStore


def main(fd: int) -> int:
    try:
        job = pickle.load(sys.stdin.buffer)
    except EOFError:  # the app stopped (a server shutting down) between starting this process and sending its job
        return 0
    out = os.fdopen(fd, "wb")  # buffered: it writes a message whole, however a signal interrupts it
    reader_gone = threading.Event()

    def send(kind, payload):
        if reader_gone.is_set():
            return
        try:
            pickle.dump((kind, payload), out)
            out.flush()
        except BrokenPipeError:  # the app went away: the store has the run, nobody is left to tell
            reader_gone.set()
            os.dup2(os.open(os.devnull, os.O_WRONLY), fd)  # what is left in the buffer goes nowhere at exit

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    parent = os.getppid()

    def should_stop() -> bool:
        # the app is gone: stop, the store keeps the run
        return stop.is_set() or reader_gone.is_set() or os.getppid() != parent

    try:
        store = RunStore(job["home"])
        _, result = train_recorded(
            store,
            job["corpus"],
            job["config"],
            on_epoch=lambda stats: send("epoch", stats),
            should_stop=should_stop,
            # a resumed run's curve so far, read here before training adds to it
            on_start=lambda run_id: send("start", (run_id, store.history(run_id))),
            **job["options"],
        )
        status = "diverged" if result.diverged else "stopped" if result.stopped else "finished"
        send("done", {"status": status, "summary": result.summary(), "config": result.config})
    except Exception as e:
        send("failed", f"{type(e).__name__}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
