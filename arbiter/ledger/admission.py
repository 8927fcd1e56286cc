"""The gate's transaction: serialized, on the driver connection, in few round trips.

Every admission reads the budget snapshot, then writes a reservation, the task row and the
decision record, under the ledger-wide write lock. The statements are SQLAlchemy's, compiled
once per dialect (``Prepared``), and run on the DBAPI connection itself:

- SQLite: the file lock, ``BEGIN IMMEDIATE``, the read, three inserts and ``COMMIT`` are
  local calls.
- PostgreSQL: two round trips. ``BEGIN``, the advisory lock and the read travel in one
  pipeline; the write (one statement of data-modifying CTEs) and ``COMMIT`` in the next.
  Statements of a pipeline run in order, each with its own snapshot under READ COMMITTED,
  so the read starts after the lock is granted and sees every earlier admission.

Rare statements (an attempt admitted again, a granted approval) run on their own in the
same transaction.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.pool import PoolProxiedConnection

from arbiter.ledger import approvals, decisions, reservations
from arbiter.ledger.budget import (
    PROBE,
    VERSION,
    VERSIONED_STATEMENT,
    Snapshot,
    snapshot_from,
    snapshot_params,
)
from arbiter.ledger.checkpoint import Checkpointer
from arbiter.ledger.db import ADVISORY_LOCK_KEY
from arbiter.ledger.models import DecisionRecord, Reservation, table
from arbiter.ledger.prepared import Prepared
from arbiter.ledger.windows import Windows

RESERVATION_KEYS = (
    "task_id", "attempt", *decisions.RESERVATION_FIELDS, "status", "created_at",
)  # fmt: skip
PG_LOCK = f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})"
# The same, in the same statement, with this transaction's commit not waiting for the disk
# (transaction-local, so the pooled connection's other users keep synchronous commits).
PG_LOCK_NO_FLUSH = (
    f"SELECT set_config('synchronous_commit', 'off', true), "
    f"pg_advisory_xact_lock({ADVISORY_LOCK_KEY})"
)
# SQLite: admissions have a connection of their own (see AdmissionConnections).
SQLITE_NO_FLUSH = "PRAGMA synchronous=NORMAL"
SQLITE_NO_AUTO_CHECKPOINT = "PRAGMA wal_autocheckpoint=0"  # the Checkpointer's job
SQLITE_DATA_VERSION = "PRAGMA data_version"


class AdmissionStatements:
    """The admission's statements, compiled for one dialect.

    ``flush_on_commit`` False (the default durability, ``before_call``): the admission's
    COMMIT does not wait for the disk (SQLite ``synchronous=NORMAL`` on the admission
    connections, PostgreSQL ``synchronous_commit=off`` for that transaction). It is as safe as the ordinary commit against a
    process crash; the disk flush comes with the worker's pre-call commit, which is
    synchronous and makes everything logged before it durable too (one WAL, in order).
    """

    def __init__(self, dialect: Dialect, *, flush_on_commit: bool = False) -> None:
        self.postgres = dialect.name == "postgresql"
        self.flush_on_commit = flush_on_commit
        self.pg_lock = PG_LOCK if flush_on_commit else PG_LOCK_NO_FLUSH
        self.snapshot = Prepared(VERSIONED_STATEMENT, dialect)
        self.probe = Prepared(PROBE, dialect)
        self.version = Prepared(VERSION, dialect)
        self.close_held = Prepared(reservations.CLOSE_HELD, dialect)
        self.granted = Prepared(approvals.GRANTED, dialect)
        self.request_approval = Prepared(approvals.REQUEST, dialect)
        if self.postgres:
            self.write_all = Prepared(decisions.PG_ADMISSION, dialect)
        else:
            self.reserve = Prepared(insert(table(Reservation)), dialect, RESERVATION_KEYS)
            self.task = Prepared(decisions.UPSERTS[dialect.name], dialect, decisions.TASK_FIELDS)
            self.decision = Prepared(
                insert(table(DecisionRecord)), dialect, decisions.DECISION_FIELDS
            )


class _Held:
    """One thread's admission connection, and the process that opened it."""

    __slots__ = ("__weakref__", "driver", "pid", "proxied", "serial")

    def __init__(self, engine: Engine) -> None:
        self.pid = os.getpid()
        self.proxied, self.driver = _detached(engine)
        self.serial = next(_SERIALS)


def _detached(engine: Engine) -> tuple[PoolProxiedConnection, Any]:
    """A new connection of the engine's, taken out of its pool; and its driver connection
    (which the proxy no longer hands out once detached)."""
    proxied = engine.raw_connection()
    driver = proxied.driver_connection
    proxied.detach()
    return proxied, driver


_INHERITED: list[_Held] = []
_SERIALS = itertools.count(1)


class AdmissionConnections:
    """One connection per thread kept for admissions, outside the pool.

    The gate runs on every publish: checking a connection out and back in (and the pool's
    rollback on return) costs more than SQLite's whole read, and a connection that only
    admits keeps its page cache warm. On SQLite it is also the only connection whose
    commits do not wait for the disk, so no other writer's durability depends on a setting
    being reset. Each is detached from the pool (it takes no pool slot) and closed when its
    thread ends, the ledger closes, or an error leaves it unusable.
    """

    def __init__(self, engine: Engine, statements: AdmissionStatements) -> None:
        self._engine = engine
        self._statements = statements
        self._local = threading.local()
        self._all: weakref.WeakSet[_Held] = weakref.WeakSet()
        self.checkpointer: Checkpointer | None = None
        if not statements.postgres:
            self.checkpointer = Checkpointer(self._checkpoint_connection)

    def _checkpoint_connection(self) -> Any:
        return _detached(self._engine)[1]

    def get(self) -> Any:
        """This thread's admission connection (the driver's), a new one after a fork."""
        return self.held().driver

    def held(self) -> _Held:
        """This thread's admission connection, with its serial number."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is not None:
            if held.pid == os.getpid():
                return held
            # Inherited through fork: the parent still talks on it. Keep it referenced so
            # that nothing here ever closes it (PostgreSQL's goodbye would end the
            # parent's session too).
            _INHERITED.append(held)
        held = _Held(self._engine)
        if not self._statements.postgres:
            if not self._statements.flush_on_commit:
                held.driver.execute(SQLITE_NO_FLUSH)
            held.driver.execute(SQLITE_NO_AUTO_CHECKPOINT)
        self._local.held = held
        self._all.add(held)
        return held

    def discard(self) -> None:
        """Close this thread's connection after an error left it unusable."""
        held: _Held | None = getattr(self._local, "held", None)
        self._local.held = None
        if held is not None:
            self._close(held)

    def committed(self) -> None:
        """An admission committed (SQLite counts them towards the next checkpoint)."""
        if self.checkpointer is not None:
            self.checkpointer.committed()

    def close(self) -> None:
        """Close every thread's connection (the ledger is closing)."""
        if self.checkpointer is not None:
            self.checkpointer.close()
        for held in list(self._all):
            self._close(held)
        self._all.clear()
        self._local = threading.local()

    @staticmethod
    def _close(held: _Held) -> None:
        if held.pid == os.getpid():
            with contextlib.suppress(Exception):
                held.proxied.invalidate()


class AdmissionTx:
    """One admission's serialized transaction on a DBAPI connection.

    On PostgreSQL the connection is in autocommit mode and the transaction is explicit: it
    begins with the snapshot read, and the writes queued by ``write`` and
    ``request_approval`` are sent with ``COMMIT``.
    """

    def __init__(self, statements: AdmissionStatements, raw: Any, connection: int = -1) -> None:
        self._s = statements
        self._raw = raw
        # Which admission connection this runs on (a number unique in the process), and
        # the data_version read on it (SQLite).
        self.connection = connection
        self.seen_data_version: int | None = None
        self._begun = False
        self._queued: list[tuple[Prepared, Any]] = []
        # PostgreSQL: read the facts again after the writes, before COMMIT, for the gate's
        # next admission (``fresh``); set by the gate, read in the same round trip.
        self.read_after: Windows | None = None
        self.fresh: Snapshot | None = None

    # --- lifecycle (the ledger calls these) --------------------------------------------------

    def open(self) -> None:
        if self._s.postgres:
            self._raw.autocommit = True
        else:
            self._begun = True
            self._raw.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        if not self._begun:
            self._end()
            return
        if self._s.postgres:
            raw = self._raw
            read = None
            with raw.pipeline():
                for prepared, params in self._queued:
                    raw.execute(prepared.sql, params)
                if self.read_after is not None:
                    read = raw.execute(self._s.snapshot.sql, self._generic(self.read_after))
                raw.execute("COMMIT")
            self._queued.clear()
            if read is not None:
                self.fresh = self._snapshot_of(read.fetchone())
        else:
            self._raw.execute("COMMIT")
        self._begun = False
        self._end()

    def abandon(self) -> None:
        """Roll back after an error (errors of the rollback itself are the caller's error's)."""
        self._queued.clear()
        try:
            if self._begun:
                self._begun = False
                self._raw.execute("ROLLBACK")
        finally:
            self._end()

    def _end(self) -> None:
        if self._s.postgres:
            self._raw.autocommit = False

    # --- statements --------------------------------------------------------------------------

    def snapshot(self, w: Windows, task_id: str, attempt: int) -> Snapshot:
        """Budget and research facts, leaving out what the attempt itself holds."""
        prepared = self._s.snapshot
        params = prepared.params(snapshot_params(w, task_id, attempt))
        if self._s.postgres and not self._begun:
            row = self._begin(prepared, params).fetchone()
        else:
            row = self._run(prepared, params).fetchone()
        return self._snapshot_of(row)

    def probe(self, task_id: str, attempt: int) -> tuple[int, int]:
        """The fact counter, and how many reservations the attempt holds already."""
        prepared = self._s.probe
        params = prepared.params({"task_id": task_id, "attempt": attempt})
        version, own = self._run(prepared, params).fetchone()
        return int(version), int(own)

    def data_version(self) -> int:
        """SQLite: this connection's data_version, which moves whenever another connection
        commits (its own commits and checkpoints leave it)."""
        self.seen_data_version = int(self._raw.execute(SQLITE_DATA_VERSION).fetchone()[0])
        return self.seen_data_version

    def version(self) -> int:
        """The fact counter as this transaction sees it (after its own writes)."""
        prepared = self._s.version
        return int(self._run(prepared, prepared.params({})).fetchone()[0])

    def checked_write(
        self, rows: decisions.AdmissionRows, expected_version: int, w: Windows
    ) -> bool:
        """PostgreSQL, one round trip: lock, write only if the fact counter is still
        ``expected_version`` (and the attempt holds nothing), read the facts, commit.

        Returns whether the rows were written; ``fresh`` holds the facts read after.
        """
        s = self._s
        raw = self._raw
        params = s.write_all.params(rows.pg_params(expected_version))
        # No BEGIN or COMMIT: in autocommit mode the statements of one pipeline segment
        # (up to its Sync) are one implicit transaction, committed at the Sync, and the
        # advisory lock lasts until then.
        with raw.pipeline():
            raw.execute(s.pg_lock)
            written = raw.execute(s.write_all.sql, params)
            read = raw.execute(s.snapshot.sql, self._generic(w))
        self.fresh = self._snapshot_of(read.fetchone())
        row = written.fetchone()
        return bool(row and row[0])

    def _generic(self, w: Windows) -> Any:
        """Snapshot parameters that leave nothing out (no attempt holds anything)."""
        return self._s.snapshot.params(snapshot_params(w))

    def _snapshot_of(self, row: Any) -> Snapshot:
        return snapshot_from(dict(zip(self._s.snapshot.columns, row, strict=True)))

    def close_held(
        self, task_id: str, attempt: int, status: str, reason: str | None, now: Any
    ) -> int:
        """Move the attempt's held reservations to ``status``; returns how many."""
        values = {
            "b_task_id": task_id,
            "b_attempt": attempt,
            "b_new_status": status,
            "b_reason": reason,
            "b_closed_at": now,
        }
        cursor = self._run(self._s.close_held, self._s.close_held.params(values))
        return int(cursor.rowcount or 0)

    def is_granted(self, task_id: str) -> bool:
        prepared = self._s.granted
        return self._run(prepared, prepared.params({"b_task_id": task_id})).fetchone() is not None

    def write(self, rows: decisions.AdmissionRows) -> None:
        """The reservation (if any), the task row and the decision record."""
        s = self._s
        if s.postgres:
            self._queued.append((s.write_all, s.write_all.params(rows.pg_params())))
            return
        if rows.reservation is not None:
            self._run(s.reserve, s.reserve.params(rows.reservation))
        self._run(s.task, s.task.params(rows.task))
        self._run(s.decision, s.decision.params(rows.decision))

    def request_approval(self, task_id: str, reason: str | None, now: Any) -> None:
        """Park the task: a pending approval, unless one is pending already."""
        prepared = self._s.request_approval
        params = prepared.params({"b_task_id": task_id, "b_reason": reason, "b_requested_at": now})
        if self._s.postgres:
            self._queued.append((prepared, params))
            return
        self._run(prepared, params)

    def _begin(self, first: Prepared | None = None, params: Any = None) -> Any:
        """PostgreSQL: BEGIN and the advisory lock, with ``first`` in the same round trip;
        returns its cursor."""
        raw = self._raw
        self._begun = True
        cursor = None
        with raw.pipeline():
            raw.execute("BEGIN")
            raw.execute(self._s.pg_lock)
            if first is not None:
                cursor = raw.execute(first.sql, params)
        return cursor

    def _run(self, prepared: Prepared, params: Mapping[str, Any] | tuple[Any, ...]) -> Any:
        raw = self._raw
        if self._s.postgres:
            if not self._begun:
                self._begin()
            for queued, queued_params in self._queued:
                raw.execute(queued.sql, queued_params)
            self._queued.clear()
        return raw.execute(prepared.sql, params)
