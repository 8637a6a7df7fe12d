"""Whose a run is: the person who started it (a demo visitor's key, or a signed-in name), and the process that
trains it (on this host, or another: a stop is asked through the database). `RunStore` has these through
`Ownership`; a run id is checked here before any use."""

import re
import socket
import sqlite3
import time
from contextlib import closing

from charrnn.runs import paths, spool
from charrnn.runs.schema import alive

RUN_ID = r"[0-9a-f]{1,32}"
CLAIM = "INSERT INTO owners (run_id, key_hash, who) VALUES (:id, :key, :who) ON CONFLICT (run_id) DO NOTHING"


def check_id(run_id: str) -> str:
    """Run ids are short hex strings; anything else (a path, SQL) is refused before any use."""
    if not isinstance(run_id, str) or not re.fullmatch(RUN_ID, run_id):
        raise ValueError(f"no run with id {run_id!r}; `python -m charrnn runs` lists them")
    return run_id


class Ownership:
    """The run store's part about owners and processes (mixed into `RunStore`, whose connection it uses)."""

    def claim(self, run_id: str, key_hash: str, who: str | None = None) -> None:
        """Record that the visitor whose key hashes to `key_hash` (a demo visitor's, or a signed-in person's, named
        `who`) started `run_id`; the first claim stands."""
        who = None if who is None else str(who)[:200]
        with self._connect() as db:
            db.execute(CLAIM, {"id": check_id(run_id), "key": str(key_hash), "who": who})

    def owned(self, key_hash: str) -> frozenset[str]:
        """The ids of the runs the visitor whose key hashes to `key_hash` started (deleted runs included)."""
        with self._connect() as db:
            rows = db.rows("SELECT run_id FROM owners WHERE key_hash=:key", {"key": str(key_hash)})
        return frozenset(r["run_id"] for r in rows)

    def adopt_visitors(self) -> None:
        """Read the owners of a ``visitors.sqlite`` file beside the store (written before they moved into the
        database) into it, then remove the file; a file that cannot be read is left as it was."""
        path = self.home / paths.VISITORS
        if not path.is_file():
            return
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as old:
                rows = old.execute("SELECT run_id, key_hash FROM owners").fetchall()
        except sqlite3.Error:  # damaged, or not ours: kept for a person to look at
            return
        with self._connect() as db:
            for run_id, key in rows:
                if isinstance(run_id, str) and re.fullmatch(RUN_ID, run_id) and isinstance(key, str):
                    db.execute(CLAIM, {"id": run_id, "key": key, "who": None})
        for end in ("", "-journal", "-wal", "-shm"):
            path.with_name(path.name + end).unlink(missing_ok=True)

    def mark_interrupted(self) -> int:
        """Runs left "running" by a process of this host that is gone become "interrupted"."""
        host = socket.gethostname()
        with self._connect() as db:  # a read alone: most opens find nothing to mark
            rows = db.rows("SELECT id, pid, pid_start FROM runs WHERE status='running' AND host=:host", {"host": host})
        dead = [r for r in rows if not alive(r["pid"], r["pid_start"])]
        marked = []
        if dead:  # a write of its own (SQLite: a read turned write could meet another's commit and fail at once),
            with self._connect() as db:  # each row only if no process took the run up since it was read
                for r in dead:
                    done = db.execute(
                        "UPDATE runs SET status='interrupted', reason=:reason WHERE id=:id AND status='running' "
                        "AND host=:host AND pid=:pid",
                        {"reason": "the process running it ended before the run did", **r, "host": host},
                    ).rowcount
                    marked += [r["id"]] if done else []
        for run_id in marked:
            for tmp in self.own_files(run_id, ".*.tmp"):  # a file its process was writing when it died
                tmp.unlink(missing_ok=True)
            if spool.recover(self, run_id):  # what it kept on this machine when its database was away too long
                why = "its database was away too long; the records it kept on this host were recovered: resume it"
                self.finish(run_id, "interrupted", why)
        return len(marked)

    def mark_stuck(self, run_id: str) -> None:
        """Mark a "running" run interrupted: its process is on another host, or stuck. Refused while its process
        is alive on this host (a delete could then pull the run from under it)."""
        run = self.run(run_id)
        status = run["status"]
        if status == "running" and run["host"] == socket.gethostname() and alive(run["pid"], run["pid_start"]):
            raise ValueError(
                f"run {run_id} is training in process {run['pid']} on this host ({run['host']}); stop it with Ctrl-C "
                f"where it runs, or `kill {run['pid']}` (it stops resumably), instead of marking it interrupted"
            )
        with self._connect() as db:
            done = db.execute(
                "UPDATE runs SET status='interrupted', reason='marked interrupted by hand', updated=:now "
                "WHERE id=:id AND status='running'",
                {"now": time.time(), "id": run_id},
            ).rowcount
        if not done:
            raise ValueError(f"run {run_id} is not running (it is {status}); only a running run can be interrupted")

    def ask_stop(self, run_id: str) -> dict:
        """Ask a running run to stop, through the database: the process training it, on any machine, stops it at a
        minibatch boundary within `charrnn.runs.store.STOP_POLL` seconds, resumably. Returns the run; ValueError
        unless it is running."""
        run = self.run(run_id)
        with self._connect() as db:
            asked = db.execute(
                "UPDATE runs SET stop_asked=:now WHERE id=:id AND status='running'", {"now": time.time(), "id": run_id}
            ).rowcount
        if not asked:
            raise ValueError(f"run {run_id} is not running (it is {run['status']}); there is nothing to stop")
        return run

    def stop_asked(self, run_id: str) -> bool:
        """Whether someone asked the run to stop since it last started training."""
        with self._connect() as db:
            row = db.row("SELECT stop_asked FROM runs WHERE id=:id", {"id": check_id(run_id)})
        return row is not None and row["stop_asked"] is not None
