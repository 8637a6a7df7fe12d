"""Where tune studies live: a relational database (SQLite by default, any SQLAlchemy URL), opened for
many workers at once, and named without ever showing a password; what a study holds, read back as
plain data (its settings, its trials); no streamlit here.

The default is the run store's server when it is on one (in a schema of Optuna's own, `optuna`), else
`tune.sqlite` next to the run store (`charrnn.runs.store.home_dir()`); `CHARRNN_TUNE_STORAGE` or
`--storage URL` (e.g. `postgresql+psycopg://user@host/db`) picks another. SQLite serves workers on
one machine; workers on several machines need a server such as PostgreSQL. A SQLite path must be a
regular file, or not exist yet, in a folder this user can write (SQLite writes its journal beside it).
"""

import math
import os
import re
import sqlite3
import time
import warnings
from contextlib import closing
from datetime import datetime

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from charrnn.runs.database import engine, is_sqlite, masked, store_url
from charrnn.runs.store import home_dir
from charrnn.train import TrainConfig
from charrnn.tune.space import FieldError, echo

ENV = "CHARRNN_TUNE_STORAGE"
OPTUNA_SCHEMA = "optuna"  # where Optuna's tables go on the run store's PostgreSQL server
STUDY_NAME = re.compile(r"[A-Za-z0-9_.\-]([A-Za-z0-9 _.\-]{0,98}[A-Za-z0-9_.\-])?")  # no space at either end
GRACE = 3  # heartbeats a trial may miss before another worker fails it
RETRIES = 1  # a trial failed by its heartbeat is run again once, with the same parameters
CONNECT_TIMEOUT = 10  # seconds to wait for a database server
OPEN_TRIES = 5  # workers starting together on a new database may race to create its tables
PATH_ECHO = 160  # a database path is repeated whole up to this length (a folder or a file name is its end)
# Fixed settings a study written before they existed does not store: it trained their defaults.
LATER_FIELDS = ("cell", "num_layers", "dropout")


def storage_url(url: str | None = None) -> str:
    """The URL asked for, else the environment's, else the run store's server (its schema `optuna`) when the run
    store is on one, else the SQLite file next to the run store; an empty URL asked for is a FieldError (it is a
    mistake, not a request for the default)."""
    if url is not None and not url.strip():
        raise FieldError("storage", "the URL is empty; give one, e.g. sqlite:///tune.sqlite, or leave it out")
    url = url or os.environ.get(ENV)
    if url:
        return url
    shared = store_url(home_dir())
    if not is_sqlite(shared):  # the run store is on a server: the studies too, in a schema of their own
        return shared.update_query_dict({"options": f"-csearch_path={OPTUNA_SCHEMA}"}).render_as_string(False)
    home = home_dir()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'tune.sqlite'}"


def check_study_name(name: str) -> str:
    """A study name the storage accepts everywhere: letters, digits, space, - _ . (1 to 100 chars)."""
    if not isinstance(name, str) or not STUDY_NAME.fullmatch(name):
        shown = name if isinstance(name, str) and len(name) <= 120 else f"{str(name)[:120]}..."
        raise FieldError(
            "study",
            f"{shown!r} is not a study name; use 1 to 100 letters, digits, '-', '_', '.', spaces (not at the ends)",
        )
    return name


def _engine_kwargs(url) -> dict:
    if url.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": 60}}  # workers take turns writing: wait, do not fail
    if url.get_backend_name() in ("postgresql", "mysql", "mariadb"):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT}, "pool_pre_ping": True}
    return {}


def check_sqlite_path(url, shown: str) -> None:
    """Refuse, before SQLite creates anything, a database that is not a file (an in-memory one keeps no
    study; /dev/null or a folder is no database) or a folder where SQLite cannot write its journal."""
    path = url.database
    if not path or path == ":memory:":
        raise FieldError("storage", f"{shown} is an in-memory database, which keeps no study; give a file path")
    real = os.path.realpath(path)
    if os.path.lexists(path) and not os.path.isfile(real):
        raise FieldError(
            "storage", f"{echo(path, PATH_ECHO)} is not a regular file; give a file path for the study database"
        )
    folder = os.path.dirname(real)
    if not os.path.isdir(folder):
        raise FieldError(
            "storage", f"the folder {echo(folder, PATH_ECHO)} does not exist; create it, or give another path"
        )
    if not os.access(folder, os.W_OK | os.X_OK) or (os.path.exists(real) and not os.access(real, os.R_OK | os.W_OK)):
        raise FieldError("storage", f"cannot write {echo(path, PATH_ECHO)} or its folder; give a path you can write")


def _sqlite_wal(url) -> None:
    """WAL mode (it stays with the file): workers reading the study never block the one writing."""
    path = url.database
    if path and path != ":memory:" and os.path.isdir(os.path.dirname(os.path.abspath(path)) or "."):
        with closing(sqlite3.connect(path, timeout=60)) as db:
            db.execute("PRAGMA journal_mode=WAL")


def open_storage(url: str | None = None, heartbeat: int = 10) -> RDBStorage:
    """The study database, with heartbeats every `heartbeat` seconds; ValueError naming the storage
    (password masked) and what to do when it is malformed, has no driver here or cannot be reached."""
    url = storage_url(url)
    shown = echo(masked(url))
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise FieldError(
            "storage",
            f"{shown!r} is not a database URL; e.g. sqlite:///tune.sqlite or postgresql+psycopg://user@host/dbname",
        ) from None
    password = parsed.password
    for attempt in range(OPEN_TRIES):
        try:
            if parsed.get_backend_name() == "sqlite":
                check_sqlite_path(parsed, shown)
                _sqlite_wal(parsed)
            elif f"search_path={OPTUNA_SCHEMA}" in parsed.query.get("options", ""):  # the run store's server
                with engine(parsed.difference_update_query(["options"])).begin() as db:
                    db.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {OPTUNA_SCHEMA}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url,
                    engine_kwargs=_engine_kwargs(parsed),
                    heartbeat_interval=heartbeat,
                    grace_period=GRACE * heartbeat,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=RETRIES),
                )
        except (NoSuchModuleError, ImportError):
            raise FieldError(
                "storage",
                f"no database driver for {echo(parsed.drivername)!r} here; install it (PostgreSQL: "
                "pip install -r requirements-postgres.txt) or use a sqlite:/// URL",
            ) from None
        except (SQLAlchemyError, sqlite3.Error, OSError) as e:
            if attempt + 1 < OPEN_TRIES and _is_race(e):
                time.sleep(0.2 * (attempt + 1))
                continue
            reason = first_line(e)
            if password:
                reason = reason.replace(str(password), "***")
            reason = echo(reason)
            raise FieldError(
                "storage", f"cannot open {shown} ({reason}); check the URL and that the server runs"
            ) from None
    raise AssertionError("unreachable")


def _is_race(e: Exception) -> bool:
    """Another worker creating the same tables at the same moment."""
    text = str(e).lower()
    return any(s in text for s in ("already exists", "duplicate key", "database is locked", "unique constraint"))


def first_line(e: Exception) -> str:
    orig = getattr(e, "orig", None)
    text = str(orig if orig is not None else e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def study_names(storage: RDBStorage) -> list[str]:
    """The studies in the storage, newest first (a study with no trial yet first of all)."""
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    summaries.sort(key=lambda s: (s.datetime_start is None, s.datetime_start or datetime.min), reverse=True)
    return [s.study_name for s in summaries]


def stored_settings(study: optuna.Study) -> dict | None:
    """The settings charrnn stored with the study (None when there are none), with the fields added since
    (LATER_FIELDS) at the value its trials trained, so that a study from before them can be joined."""
    settings = study.user_attrs.get("charrnn")
    if not isinstance(settings, dict):
        return None
    if not isinstance(settings.get("fixed"), dict):
        return settings
    fixed, default = settings["fixed"], TrainConfig()
    varied = {item.split("=")[0] for item in str(settings.get("space", "")).split(",")}
    names = [n for n in LATER_FIELDS if n not in fixed and n not in varied]
    return {**settings, "fixed": {**fixed, **{n: getattr(default, n) for n in names}}}


def differences(ours: dict, theirs: dict) -> str:
    """How a worker's settings differ from the study's, e.g. "num_epochs 5, not 30" (the first two)."""
    out = []
    if ours["space"] != theirs.get("space"):
        out.append(f"space {echo(ours['space'])}, not {echo(theirs.get('space'))}")
    fixed = theirs.get("fixed", {})
    out += [
        f"{k} {echo(repr(v))}, not {echo(repr(fixed.get(k)))}" for k, v in ours["fixed"].items() if fixed.get(k) != v
    ]
    if ours["text"] != theirs.get("text"):
        out.append(f"text {echo(ours['text'].get('name'))}, not {echo(theirs.get('text', {}).get('name'))}")
    more = f"; and {len(out) - 2} more" if len(out) > 2 else ""
    return "; ".join(out[:2]) + more or "another version of charrnn"


def trial_rows(study: optuna.Study) -> list[dict]:
    """Every trial of the study, oldest first, as plain data (strict JSON: None for a missing value)."""
    best = best_number(study)
    return [trial_row(t, t.number == best) for t in study.get_trials(deepcopy=False)]


def trial_row(t: optuna.trial.FrozenTrial, best: bool = False) -> dict:
    complete = t.state == optuna.trial.TrialState.COMPLETE  # optuna gives a pruned trial its last report
    return {
        "number": t.number,
        "state": t.state.name,
        "params": t.params,
        "value": t.value if complete and t.value is not None and math.isfinite(t.value) else None,
        "epochs": t.user_attrs.get("epochs", 0),
        "run_id": t.user_attrs.get("run_id"),
        "reason": t.user_attrs.get("reason", ""),
        "best": best,
    }


def best_number(study: optuna.Study) -> int | None:
    """The best complete trial's number, None before the first one completes."""
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    return min(done, key=lambda t: t.value).number if done else None
