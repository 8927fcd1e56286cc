"""Engines for the ledger database: SQLite (the default) or PostgreSQL.

SQLite runs in WAL mode with a busy timeout and foreign keys on. pysqlite's own
transaction handling is switched off so that SQLAlchemy's ``begin`` event issues the
``BEGIN`` itself: ``BEGIN IMMEDIATE`` for a serialized transaction (the write lock is
taken before the budget is read), plain ``BEGIN`` otherwise. On PostgreSQL a serialized
transaction takes a transaction-scoped advisory lock instead.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import psycopg
from sqlalchemy import Connection, Engine, create_engine, event, exc, make_url
from sqlalchemy.engine import URL

from arbiter.errors import ConfigError, LedgerUnavailable
from arbiter.settings import is_home

SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 5
# One key for the whole ledger: every admission anywhere serializes on it, which is what
# makes a cap hold across processes and machines.
ADVISORY_LOCK_KEY = 0x50E7E1C4  # "sovereign ledger"
SERIALIZED = "sovereign_serialized"


def normalise_url(url: str | URL) -> URL:
    """Parse ``url``; ``postgresql://`` means psycopg 3, the driver that is installed."""
    try:
        parsed = make_url(url)
    except (exc.ArgumentError, ValueError):
        raise ConfigError(
            f"{str(url)!r} is not a database URL; set SOVEREIGN_DATABASE_URL to "
            "sqlite:///PATH or postgresql://USER@HOST/DB"
        ) from None
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def describe(url: URL) -> str:
    """The URL without its password, for messages (a SQLite file: its path)."""
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return url.database
    return url.render_as_string(hide_password=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


# orjson writes the gate's records (facts, trace, payload) several times faster than json;
# datetimes and dataclasses go through the default hook as json.dumps would send them.
_ORJSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | (orjson.OPT_PASSTHROUGH_DATACLASS)
)


def dumps_json(value: Any) -> str:
    """JSON columns' text: tuples and sets become lists, unknown objects their text."""
    try:
        return orjson.dumps(value, default=_json_default, option=_ORJSON_OPTIONS).decode()
    except (TypeError, orjson.JSONEncodeError):
        # What orjson refuses and json takes (integers past 64 bits).
        return json.dumps(value, default=_json_default)


def create_ledger_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """An engine set up for the ledger's dialect."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, echo=echo)
    if parsed.get_backend_name() == "postgresql":
        return create_engine(
            parsed,
            echo=echo,
            pool_pre_ping=False,
            json_serializer=dumps_json,
            connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
        )
    raise LedgerUnavailable(
        f"the ledger supports SQLite and PostgreSQL, not {parsed.get_backend_name()}; "
        "set SOVEREIGN_DATABASE_URL to sqlite:///PATH or postgresql+psycopg://HOST/DB"
    )


def _sqlite_engine(url: URL, *, echo: bool) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        _sqlite_folder(Path(database).expanduser().parent)
    engine = create_engine(
        url,
        echo=echo,
        json_serializer=dumps_json,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to the "begin" hook below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(SERIALIZED, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _sqlite_folder(folder: Path) -> None:
    """Make sure the ledger's folder exists; only a deployment's own var/ is created.

    Anywhere else a missing folder is a mistyped URL, and creating it would start an
    empty ledger silently beside the real one.
    """
    if folder.is_dir():
        return
    if folder.name == "var" and is_home(folder.parent):
        folder.mkdir(exist_ok=True)
        return
    raise ConfigError(
        f"the folder {folder} of the SQLite ledger does not exist; create it, or fix "
        "SOVEREIGN_DATABASE_URL (a relative path is taken from SOVEREIGN_HOME)"
    )


@contextmanager
def serialized_connection(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the ledger's write lock from its first statement to commit."""
    if engine.dialect.name == "postgresql":
        with _pg_serialized(engine) as conn:
            yield conn
        return
    with engine.connect() as raw:
        conn = raw.execution_options(**{SERIALIZED: True})
        with conn.begin():
            yield conn


@contextmanager
def _pg_serialized(engine: Engine) -> Iterator[Connection]:
    # BEGIN and the advisory lock travel in one round trip (the simple query protocol takes
    # several statements); the lock lasts until COMMIT or ROLLBACK. Statements run after
    # the lock is granted, so under READ COMMITTED each sees every earlier admission.
    with pg_autocommit(engine) as conn:
        conn.exec_driver_sql(_PG_BEGIN)
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(exc.DBAPIError):
                conn.exec_driver_sql("ROLLBACK")
            raise
        conn.exec_driver_sql("COMMIT")


# The snapshot's parameters are always narrow windows, so its generic plan is the right
# one; planning it afresh for each admission would cost more than running it.
PG_BEGIN_STATEMENTS = (
    "BEGIN",
    "SET LOCAL plan_cache_mode = force_generic_plan",
    f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})",
)
_PG_BEGIN = "; ".join(PG_BEGIN_STATEMENTS)


@contextmanager
def pg_autocommit(engine: Engine) -> Iterator[Connection]:
    """A PostgreSQL connection whose caller sends BEGIN and COMMIT itself."""
    with engine.connect() as raw:
        yield raw.execution_options(isolation_level="AUTOCOMMIT")


@contextmanager
def plain_connection(engine: Engine) -> Iterator[Connection]:
    """An ordinary read-committed transaction (deferred on SQLite: for reading)."""
    with engine.connect() as conn, conn.begin():
        yield conn


@contextmanager
def translate_errors(url: URL) -> Iterator[None]:
    """Turn a database that cannot be reached (or stays locked) into ``LedgerUnavailable``."""
    try:
        yield
    except (exc.OperationalError, exc.InterfaceError) as error:
        raise LedgerUnavailable(_sentence(url, error.orig)) from None
    except psycopg.OperationalError as error:  # the admission's own statements (driver level)
        raise LedgerUnavailable(_sentence(url, error)) from None


def _sentence(url: URL, error: BaseException | None) -> str:
    detail = str(error).strip().splitlines()[0] if error is not None and str(error) else ""
    detail = detail.rstrip(".") or "no answer"
    if "locked" in detail or "busy" in detail:
        return (
            f"the ledger database {describe(url)} stayed locked ({detail}); another process "
            "holds it too long, or point SOVEREIGN_DATABASE_URL at PostgreSQL"
        )
    return (
        f"cannot reach the ledger database {describe(url)} ({detail}); "
        "start it or fix SOVEREIGN_DATABASE_URL"
    )
