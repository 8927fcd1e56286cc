"""The gate's transaction: lock, read, decide, write, commit, in that order.

Why a cap written in a rule holds exactly, under any concurrency, on SQLite or PostgreSQL:

1. Every admission runs in one transaction that first takes the ledger-wide write lock
   (``BEGIN IMMEDIATE`` on SQLite; ``pg_advisory_xact_lock`` on PostgreSQL, whose
   statements then run under READ COMMITTED, each seeing every commit made before it). So
   admissions run one after another, and each reads every earlier admission's rows.
2. Under the lock it reads the snapshot: settled usage plus every held reservation.
3. The decision is a pure function of that snapshot, the request, the policy and the
   prices (``arbiter.gate.decide``). When it admits, it holds a reservation that is a true
   upper bound of what the provider can bill for the route (``arbiter.bound``).
4. The reservation, task row and decision record are written, then COMMIT waits for the
   disk. Only then is the task published, so nothing runs without its record. (On
   PostgreSQL the statements travel in two pipelines, BEGIN-lock-snapshot and
   writes-COMMIT; the server still runs them one after another, in that order.)
5. Money leaves a reservation only by settling (replaced by the real cost, which cannot
   exceed the bound), releasing (nothing was billed) or expiring. Settles and other writes
   may run outside the lock: they only lower what is held or replace it by less, so a
   snapshot taken under the lock can only overstate what was committed.

Hence the held-plus-settled sum that a rule compares with its cap never understates the
spend, and no two admissions both take the same last dollars.
"""

from __future__ import annotations

import contextlib
from typing import Any

from psycopg import Error as PgError
from sqlalchemy import Connection, Table, bindparam, insert

from arbiter.ledger import approvals, decisions, reservations
from arbiter.ledger.budget import STATEMENT, Snapshot, snapshot_from, snapshot_params
from arbiter.ledger.db import PG_BEGIN_STATEMENTS
from arbiter.ledger.models import DecisionRecord, Reservation, Task, table
from arbiter.ledger.prepared import Prepared
from arbiter.ledger.windows import Windows

_reservations = table(Reservation)
_decisions = table(DecisionRecord)
_tasks = table(Task)
# Statements compiled once per dialect (and shape of rows): see ``prepared``.
_PREPARED: dict[tuple[Any, ...], Prepared] = {}


def _prepared(dialect: Any, key: tuple[Any, ...], build: Any, keys: Any = None) -> Prepared:
    found = _PREPARED.get((dialect.name, *key))
    if found is None:
        found = _PREPARED[(dialect.name, *key)] = Prepared(build(), dialect, keys)
    return found


def _binds(tbl: Table, prefix: str, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: bindparam(f"{prefix}{n}", type_=tbl.c[n].type) for n in names}


def _pg_write(reserve: tuple[str, ...], task: tuple[str, ...], record: tuple[str, ...]) -> Any:
    """PostgreSQL: the rows of one admission in one statement (data-modifying CTEs), so
    the write is one round trip."""
    upsert = decisions.task_upsert("postgresql", _binds(_tasks, "t_", task))
    statement = insert(_decisions).values(_binds(_decisions, "d_", record))
    statement = statement.add_cte(upsert.cte("t"))
    if reserve:
        held = insert(_reservations).values(_binds(_reservations, "r_", reserve))
        statement = statement.add_cte(held.cte("r"))
    return statement


class AdmissionTx:
    """One admission's statements, on a connection that holds the write lock (SQLite)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        # The hot statements run on the driver connection of this very transaction.
        self._raw: Any = conn.connection.driver_connection

    def _run(self, prepared: Prepared, values: Any) -> Any:
        return self._raw.execute(prepared.sql, prepared.params(values))

    def snapshot(self, w: Windows, task_id: str, attempt: int) -> Snapshot:
        """Budget and research facts, leaving out what the attempt itself holds."""
        prepared = _prepared(self.conn.dialect, ("snapshot",), lambda: STATEMENT)
        row = self._run(prepared, snapshot_params(w, task_id, attempt)).fetchone()
        return snapshot_from(dict(zip(prepared.columns, row, strict=True)))

    def close_held(
        self, task_id: str, attempt: int, status: str, reason: str | None, now: Any
    ) -> int:
        """Move the attempt's held reservations to ``status``; returns how many."""
        return reservations.close_held(self.conn, task_id, attempt, status, reason, now)

    def is_granted(self, task_id: str) -> bool:
        """Whether a person granted the parked task."""
        return approvals.is_granted(self.conn, task_id)

    def write(self, rows: decisions.AdmissionRows) -> None:
        """The reservation (if any), the task row and the decision record."""
        if rows.reservation is not None:
            self._insert("reserve", lambda _: insert(_reservations), rows.reservation)
        self._insert(
            "task",
            lambda keys: decisions.task_upsert("sqlite", _binds(_tasks, "", keys)),
            rows.task,
        )
        self._insert("decision", lambda _: insert(_decisions), rows.decision)

    def _insert(self, name: str, build: Any, values: dict[str, Any]) -> None:
        """SQLite: one row, by a statement compiled once for its columns."""
        keys = tuple(values)
        self._run(_prepared(self.conn.dialect, (name, keys), lambda: build(keys), keys), values)

    def request_approval(self, task_id: str, reason: str | None, now: Any) -> None:
        """Park the task: a pending approval, unless one is pending already."""
        approvals.request(self.conn, task_id, reason, now)


class PgAdmissionTx(AdmissionTx):
    """PostgreSQL: the same statements in two round trips instead of four.

    BEGIN, the lock and the snapshot go in one pipeline; the writes wait and go with
    COMMIT in a second. A statement through ``conn`` (a rare path: a parked task, an
    attempt admitted again) first sends the writes queued before it, so order is kept.
    """

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self._queued: list[tuple[Prepared, Any]] = []
        self._begun = False

    def snapshot(self, w: Windows, task_id: str, attempt: int) -> Snapshot:
        prepared = _prepared(self.conn.dialect, ("snapshot",), lambda: STATEMENT)
        with self._raw.pipeline():
            if not self._begun:
                for statement in PG_BEGIN_STATEMENTS:
                    self._raw.execute(statement)
                self._begun = True
            cursor = self._run(prepared, snapshot_params(w, task_id, attempt))
        return snapshot_from(dict(zip(prepared.columns, cursor.fetchone(), strict=True)))

    def write(self, rows: decisions.AdmissionRows) -> None:
        held = rows.reservation or {}
        shape = (tuple(held), tuple(rows.task), tuple(rows.decision))
        prepared = _prepared(self.conn.dialect, ("write", *shape), lambda: _pg_write(*shape))
        params = {f"r_{k}": v for k, v in held.items()}
        params.update({f"t_{k}": v for k, v in rows.task.items()})
        params.update({f"d_{k}": v for k, v in rows.decision.items()})
        self._queued.append((prepared, params))

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        for prepared, params in queued:
            self._run(prepared, params)

    def close_held(
        self, task_id: str, attempt: int, status: str, reason: str | None, now: Any
    ) -> int:
        self._flush()
        return super().close_held(task_id, attempt, status, reason, now)

    def is_granted(self, task_id: str) -> bool:
        self._flush()
        return super().is_granted(task_id)

    def request_approval(self, task_id: str, reason: str | None, now: Any) -> None:
        self._flush()
        super().request_approval(task_id, reason, now)

    def commit(self) -> None:
        """Send the queued writes and COMMIT; the server answers once the WAL is on disk."""
        with self._raw.pipeline():
            self._flush()
            self._raw.execute("COMMIT")

    def rollback(self) -> None:
        """End a failed admission; a connection the server dropped leaves the pool."""
        if self._raw.closed:
            self.conn.invalidate()
        elif self._begun:
            with contextlib.suppress(PgError):
                self._raw.execute("ROLLBACK")
