"""Where the run store lives: one SQLAlchemy URL, and the engine that reaches it.

The default is ``sqlite:///<home>/runs.sqlite``: two commands on a fresh machine need no server.
``CHARRNN_DATABASE_URL`` (which `--database URL` and the app's ``[connections.charrnn]`` secret set)
names another: PostgreSQL through psycopg 3 is the one tested, shared by many app servers and workers.
A URL is never shown with its password: every message masks it.

SQLite gets one short connection per call (no pool: any thread or forked process may open its own),
in WAL mode with foreign keys on, and transactions that SQLAlchemy begins itself (the driver's own
implicit ones are off), so a migration can take the write lock at once (``BEGIN IMMEDIATE``).
"""

import os
import re
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

ENV = "CHARRNN_DATABASE_URL"
SQLITE_FILE = "runs.sqlite"
BACKENDS = ("sqlite", "postgresql")
CONNECT_TIMEOUT = 10  # seconds


class StoreError(ValueError):
    """The run store's folder, file or server cannot be used; the message names it (never with its password) and
    what to do."""


class StoreUnreachable(StoreError):
    """The store's server did not answer (down, restarting, the network gone): a write may be tried again later."""


class DatabaseUrlError(StoreError):
    """A database URL that cannot name a run store."""


def store_url(home: Path, url: str | None = None) -> sa.URL:
    """The run store's URL: `url`, else CHARRNN_DATABASE_URL, else the SQLite file in `home`."""
    text = url or os.environ.get(ENV) or ""
    if not text:
        return sa.URL.create("sqlite", database=str(home / SQLITE_FILE))
    try:
        parsed = sa.make_url(text)
    except (sa.exc.ArgumentError, ValueError):
        raise DatabaseUrlError(
            f"{ENV} is not a database URL ({_shown(text)}); give one such as "
            "postgresql://user:password@host/charrnn, or unset it for the SQLite file"
        ) from None
    if parsed.get_backend_name() not in BACKENDS:
        raise DatabaseUrlError(
            f"{ENV} names a {parsed.get_backend_name()} database ({masked(parsed)}); the run store lives in "
            "PostgreSQL or SQLite"
        )
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() != "psycopg":
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3: the driver requirements name
    return parsed


def masked(url: sa.URL | str) -> str:
    """The URL with its password as *** (also when it does not parse)."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return _shown(str(url))


USERINFO = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def _shown(text: str) -> str:
    """A URL that does not parse, as a message may quote it: what stands between user: and @ hidden."""
    return USERINFO.sub(r"\1***@", text)[:160]


def is_sqlite(url: sa.URL) -> bool:
    return url.get_backend_name() == "sqlite"


def engine(url: sa.URL) -> sa.Engine:
    """The process's engine for `url` (one per URL)."""
    return _engine(url.render_as_string(hide_password=False))


@lru_cache(maxsize=16)
def _engine(url: str) -> sa.Engine:
    parsed = sa.make_url(url)
    if not is_sqlite(parsed):
        # A server that does not answer is given up on after CONNECT_TIMEOUT seconds, not the system's minutes.
        connect = {"connect_timeout": CONNECT_TIMEOUT}
        return sa.create_engine(parsed, pool_pre_ping=True, pool_size=2, max_overflow=4, connect_args=connect)
    made = sa.create_engine(parsed, poolclass=NullPool, connect_args={"timeout": 30})

    @sa.event.listens_for(made, "connect")
    def _sqlite_settings(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" below starts every transaction
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @sa.event.listens_for(made, "begin")
    def _sqlite_begin(connection):
        connection.exec_driver_sql(f"BEGIN {connection.get_execution_options().get('sqlite_begin', '')}")

    return made


class Connection:
    """A transaction's connection: SQL with named parameters, rows as dicts."""

    def __init__(self, db: sa.Connection):
        self.db = db

    def execute(self, sql: str, params: dict | None = None) -> sa.CursorResult:
        return self.db.execute(sa.text(sql), params or {})

    def rows(self, sql: str, params: dict | None = None) -> list[dict]:
        return [dict(row) for row in self.execute(sql, params).mappings()]

    def row(self, sql: str, params: dict | None = None) -> dict | None:
        found = self.rows(sql, params)
        return found[0] if found else None
