"""Writes to the run store that wait while its server is away (issue 23's faults).

A run on a PostgreSQL store goes on training when the server restarts: its epoch records, checkpoint rows and
final status queue here, in order, and reach the database once it answers again; nothing recorded is lost. If
the server stays away longer than OUTAGE_LIMIT, the run ends: its checkpoint files are on this machine's disk,
and the next open of the store on this host marks it interrupted (its process is gone), resumable from them.
"""

import time
from collections import deque

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
