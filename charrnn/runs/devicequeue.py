"""A first-in, first-out lock for one device, shared by every session of the app (no streamlit here).

A session's run either takes the free device at once or waits in line; the line is fair (first come,
first served), one place per waiter, and a waiter can leave it (Cancel, a closed tab) at any time.
It also answers what the page shows: a waiter's place, who holds the device and how many wait.
A `python -m charrnn train` in a terminal does not use it: it trains beside the app, as before.
"""

import threading


class DeviceQueue:
    """`acquire(ticket)` waits in line; `release()` hands the device to the next in line."""

    def __init__(self):
        self._cond = threading.Condition()
        self._holder = None  # the ticket (e.g. a Runner) using the device
        self._line: list = []  # tickets waiting, first come first

    def try_acquire(self, ticket) -> bool:
        """Take the device if it is free and nobody waits; never blocks."""
        with self._cond:
            if self._holder is None and not self._line:
                self._holder = ticket
                return True
            return False

    def acquire(self, ticket, cancelled=lambda: False, poll: float = 0.5) -> bool:
        """Wait in line until it is `ticket`'s turn and the device is free (True), or until
        `cancelled()` says to leave the line (False)."""
        with self._cond:
            if ticket not in self._line:
                self._line.append(ticket)
            try:
                while not (self._holder is None and self._line[0] is ticket):
                    if cancelled():
                        return False
                    self._cond.wait(poll)
                self._holder = ticket
                return True
            finally:
                self._line.remove(ticket)
                self._cond.notify_all()

    def release(self):
        with self._cond:
            self._holder = None
            self._cond.notify_all()

    def place(self, ticket) -> int | None:
        """1 for the first in line, ...; None when `ticket` is not waiting."""
        with self._cond:
            return self._line.index(ticket) + 1 if ticket in self._line else None

    def holder(self):
        with self._cond:
            return self._holder

    def waiting(self) -> list:
        with self._cond:
            return list(self._line)
