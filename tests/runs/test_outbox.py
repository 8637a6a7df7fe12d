"""The run store's writes wait out a server that is away (issue 23's faults): queued in order while it does not
answer, made once it does, and given up with StoreUnreachable past the limit (charrnn/runs/spool.py)."""

import pytest

from charrnn.runs.database import StoreError, StoreUnreachable
from charrnn.runs.spool import Outbox


class Server:
    """A store whose server is away until `back` is set; what reached it, in order."""

    def __init__(self):
        self.up, self.written = True, []

    def write(self, *row):
        if not self.up:
            raise StoreUnreachable("the run store at postgresql://u:***@db/runs cannot be reached")
        self.written.append(row)


def test_writes_wait_in_order_while_the_server_is_away_and_arrive_once_it_is_back():
    server, now = Server(), [0.0]
    box = Outbox(limit=300, clock=lambda: now[0])
    box.send(server.write, "epoch", 1)
    server.up = False
    for epoch in (2, 3, 4):
        now[0] += 60  # three minutes away: within the limit, the run trains on
        box.send(server.write, "epoch", epoch)
    assert server.written == [("epoch", 1)] and len(box.pending) == 3
    server.up = True
    box.send(server.write, "finish", "finished")
    assert server.written == [("epoch", 1), ("epoch", 2), ("epoch", 3), ("epoch", 4), ("finish", "finished")]
    assert not box.pending and box.away_since is None


def test_a_server_away_past_the_limit_ends_the_run():
    server, now = Server(), [0.0]
    box = Outbox(limit=300, clock=lambda: now[0])
    server.up = False
    box.send(server.write, "epoch", 1)
    now[0] = 299
    box.send(server.write, "epoch", 2)
    now[0] = 301
    with pytest.raises(StoreUnreachable):
        box.send(server.write, "epoch", 3)
    assert server.written == []


def test_any_other_store_error_is_raised_at_once():
    def damaged(*_):
        raise StoreError("runs.sqlite is not a charrnn run store")

    with pytest.raises(StoreError, match="not a charrnn run store"):
        Outbox().send(damaged)
