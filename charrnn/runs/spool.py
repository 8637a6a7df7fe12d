"""Writes to the run store that wait while its server is away (issue 23's faults), and what a run could not
hand to it before giving up.

A run on a PostgreSQL store goes on training when the server restarts: its epoch records, checkpoint rows and
final status queue in an `Outbox`, in order, and reach the database once it answers again; nothing recorded is
lost. If the server stays away longer than OUTAGE_LIMIT, the run ends, and its pending epoch records and
checkpoints are kept (`keep`) in ``<home>/checkpoints/<run id>/`` on the machine that trained it. The next open of
the store on that machine (RunStore.mark_interrupted) reads them into the database (`recover`), checks each
checkpoint read back by its SHA-256, and only then removes the files: the run is resumable from its last epoch."""

import json
import os
import re
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path

from charrnn.files import atomic_write
from charrnn.runs import paths
from charrnn.runs.database import StoreUnreachable

OUTAGE_LIMIT = 300.0  # seconds a run trains on without its database
RETRY_EVERY = 1.0  # seconds between tries while the run waits at its end


class Outbox:
    """Store writes (a callable and its arguments), made at once when the server answers, queued while it does
    not; StoreUnreachable once it has been away for more than `limit` seconds."""

    def __init__(self, limit: float = OUTAGE_LIMIT, clock=time.monotonic):
        self.pending: deque = deque()
        self.limit, self.clock = limit, clock
        self.away_since: float | None = None

    def send(self, write, *args) -> None:
        self.pending.append((write, args))
        self.flush()

    def flush(self, wait: bool = False) -> bool:
        """Make the queued writes in order; True when none is left. `wait`: try again every RETRY_EVERY seconds
        until they are made or the limit passes (a run's end waits for its last records)."""
        while self.pending:
            write, args = self.pending[0]
            try:
                write(*args)
            except StoreUnreachable:
                now = self.clock()
                self.away_since = now if self.away_since is None else self.away_since
                if now - self.away_since > self.limit:
                    raise
                if not wait:
                    return False
                time.sleep(RETRY_EVERY)
                continue
            self.pending.popleft()
            self.away_since = None
        return True


EPOCHS = "epochs.jsonl"  # one epoch record (a JSON object) per line, in the order they were made


def keep(store, run_id: str, pending) -> Path | None:
    """Write the outbox's pending epoch records and checkpoints of the run (`pending`: (write, args) pairs) to its
    folder; returns the folder, None when nothing was pending."""
    folder, kept = store.checkpoint_dir / run_id, False
    for write, args in pending:
        if write == store.add_checkpoint:
            _, epoch, data = args
            atomic_write(folder / f"epoch-{epoch:05d}.pt", lambda f, data=data: f.write(data))
        elif write == store.add_epoch:
            _, stats = args
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / EPOCHS, "a") as f:
                f.write(json.dumps(stats if isinstance(stats, dict) else asdict(stats)) + "\n")
                f.flush()
                os.fsync(f.fileno())
        else:
            continue
        kept = True
    return folder if kept else None


def recover(store, run_id: str) -> int:
    """Read a run's kept records into the database, then remove them; how many were read."""
    found = 0
    for path in store.own_files(run_id, EPOCHS):
        for line in path.read_text().splitlines():
            found += 1
            try:
                store.add_epoch(run_id, json.loads(line))
            except (ValueError, TypeError):  # a line cut short by the machine going down: the others still count
                continue
        path.unlink()
    files = [p for p in store.own_files(run_id, "epoch-*.pt") if re.fullmatch(r"epoch-\d{1,9}", p.stem)]
    for path in files:
        epoch, data = int(path.stem.removeprefix("epoch-")), path.read_bytes()
        store.add_checkpoint(run_id, epoch, data)
        if store.checkpoint_bytes(run_id, epoch) == data:  # read back and checked by its SHA-256 first
            path.unlink()
    paths.remove_if_empty(store.checkpoint_dir / run_id)
    return found + len(files)
