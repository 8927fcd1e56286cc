"""Decision records and the task rows the gate writes alongside them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Connection, bindparam, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from arbiter.ledger.models import NANO, DecisionRecord, Reservation, Task, table
from arbiter.ledger.windows import from_db

_decisions = table(DecisionRecord)
_tasks = table(Task)
_reservations = table(Reservation)


@dataclass(frozen=True, slots=True)
class StoredDecision:
    """A decision as the ledger holds it: enough to explain it afterwards."""

    id: int
    task_id: str
    attempt: int
    policy_version: str | None
    verdict: str
    route: dict[str, Any] | None
    candidate: str | None
    decided_by: str | None
    reason: str | None
    retry_after_s: float | None
    reserved_usd: float
    facts: dict[str, Any]
    trace: list[Any] | None
    created_at: datetime


def record(conn: Connection, values: dict[str, Any]) -> None:
    """Insert one decision record (``values`` names the table's columns)."""
    conn.execute(insert(_decisions), values)


def upsert_task(conn: Connection, values: dict[str, Any]) -> None:
    """Insert the task row, or update it when the task passes the gate again (a retry)."""
    statement = _UPSERTS.get(conn.dialect.name)
    if statement is None:
        task_id = values["id"]
        changed = {k: v for k, v in values.items() if k not in {"id", "created_at"}}
        result = conn.execute(update(_tasks).where(_tasks.c.id == task_id).values(**changed))
        if not result.rowcount:
            conn.execute(insert(_tasks), values)
        return
    conn.execute(statement, values)


def _upsert(dialect_insert: Any) -> Any:
    statement = dialect_insert(_tasks)
    kept = {"id", "created_at", "result"}
    return statement.on_conflict_do_update(
        index_elements=[_tasks.c.id],
        set_={c.name: statement.excluded[c.name] for c in _tasks.columns if c.name not in kept},
    )


# One statement instead of two on the databases that have INSERT ... ON CONFLICT.
_UPSERTS: dict[str, Any] = {
    "postgresql": _upsert(postgresql.insert),
    "sqlite": _upsert(sqlite.insert),
}


def write_admission(
    conn: Connection,
    task_id: str,
    attempt: int,
    now: datetime,
    reservation: dict[str, Any] | None,
    task: dict[str, Any],
    decision: dict[str, Any],
) -> None:
    """Write what one admission leaves: its reservation (if any), task row and record.

    On PostgreSQL the three writes are one statement (data-modifying CTEs), one round trip
    inside the serialized transaction; elsewhere they are three.
    """
    ids = {"task_id": task_id, "attempt": attempt}
    task_values = {"id": task_id, "attempt": attempt, **task, "created_at": now, "updated_at": now}
    decision_values = {**ids, **decision, "created_at": now}
    if conn.dialect.name == "postgresql":
        reserve = reservation or {c: None for c in _RESERVATION_FIELDS}
        params = {
            **{f"r_{k}": v for k, v in reserve.items()},
            **{f"t_{k}": v for k, v in task_values.items()},
            **{f"d_{k}": v for k, v in decision_values.items()},
            "reserve": reservation is not None,
        }
        conn.execute(_PG_ADMISSION, params)
        return
    if reservation is not None:
        conn.execute(
            insert(_reservations), {**ids, **reservation, "status": "held", "created_at": now}
        )
    upsert_task(conn, task_values)
    record(conn, decision_values)


_RESERVATION_FIELDS = ("amount_nusd", "tokens", "tier", "provider", "model", "expires_at")
_TASK_FIELDS = (
    "id", "kind", "source", "status", "queue", "attempt", "payload", "error",
    "confidential", "depth", "topic", "created_at", "updated_at",
)  # fmt: skip
_DECISION_FIELDS = (
    "task_id", "attempt", "policy_version", "verdict", "route", "candidate", "decided_by",
    "reason", "retry_after_s", "reserved_nusd", "facts", "trace", "created_at",
)  # fmt: skip


def _pg_admission() -> Any:
    task_updates = ", ".join(
        f"{c} = excluded.{c}" for c in _TASK_FIELDS if c not in {"id", "created_at"}
    )
    sql = f"""
WITH r AS (
    INSERT INTO reservations (task_id, attempt, {", ".join(_RESERVATION_FIELDS)},
                              status, created_at)
    SELECT :d_task_id, :d_attempt, {", ".join(f":r_{c}" for c in _RESERVATION_FIELDS)},
           'held', :d_created_at
    WHERE :reserve
), t AS (
    INSERT INTO tasks ({", ".join(_TASK_FIELDS)})
    VALUES ({", ".join(f":t_{c}" for c in _TASK_FIELDS)})
    ON CONFLICT (id) DO UPDATE SET {task_updates}
)
INSERT INTO decisions ({", ".join(_DECISION_FIELDS)})
VALUES ({", ".join(f":d_{c}" for c in _DECISION_FIELDS)})
"""
    types: dict[str, Any] = {}
    for prefix, tbl, fields in (
        ("r", _reservations, _RESERVATION_FIELDS),
        ("t", _tasks, _TASK_FIELDS),
        ("d", _decisions, _DECISION_FIELDS),
    ):
        for name in fields:
            types[f"{prefix}_{name}"] = tbl.c[name].type
    statement = text(sql).bindparams(
        *(bindparam(name, type_=type_) for name, type_ in types.items()),
        bindparam("reserve", type_=Boolean()),
    )
    return statement


_PG_ADMISSION = _pg_admission()


def listing(
    conn: Connection, task_id: str | None = None, limit: int | None = None
) -> list[StoredDecision]:
    """Decision records in the order they were taken (oldest first)."""
    query = select(_decisions).order_by(_decisions.c.id)
    if task_id is not None:
        query = query.where(_decisions.c.task_id == task_id)
    if limit is not None:
        query = query.limit(limit)
    return [
        StoredDecision(
            id=row.id,
            task_id=row.task_id,
            attempt=row.attempt,
            policy_version=row.policy_version,
            verdict=row.verdict,
            route=row.route,
            candidate=row.candidate,
            decided_by=row.decided_by,
            reason=row.reason,
            retry_after_s=row.retry_after_s,
            reserved_usd=row.reserved_nusd / NANO,
            facts=row.facts,
            trace=row.trace,
            created_at=from_db(row.created_at),
        )
        for row in conn.execute(query)
    ]


def task_row(conn: Connection, task_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(_tasks).where(_tasks.c.id == task_id)).first()
    return dict(row._mapping) if row is not None else None
