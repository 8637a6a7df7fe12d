"""What the CLI's commands share: strict JSON, printable names, and Ctrl-C / SIGTERM as a Stop."""

import json
import math
import signal
import threading
from contextlib import contextmanager


def finite(value):
    """`value` with every non-finite float made None: JSON (RFC 8259) has no Infinity or NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def print_json(value) -> None:
    """One line of strict JSON: a diverged figure is null, and the status beside it says why."""
    print(json.dumps(finite(value), allow_nan=False), flush=True)


def printable(text: str) -> str:
    """A stored name as one line with no terminal control characters."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


@contextmanager
def stop_on_signals():
    """SIGINT (Ctrl-C) and SIGTERM ask the run to stop between minibatches, as the app's Stop button does;
    a second one stops at once. Yields a dict that gets the signal's number."""
    caught = {}

    def handler(signum, frame):
        if caught:
            raise KeyboardInterrupt
        caught["signal"] = signum

    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        yield caught
        return
    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for sig, previous in old.items():
            signal.signal(sig, signal.SIG_DFL if previous is None else previous)
