"""Decision records and the task rows the gate writes alongside them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from arbiter.ledger.models import NANO, DecisionRecord, Task, table
from arbiter.ledger.windows import from_db

_decisions = table(DecisionRecord)
_tasks = table(Task)


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


def task_upsert(dialect: str, values: Any) -> Any:
    """Insert the task row, or, when the task passes the gate again (a retry, a granted
    approval), update the columns the admission gives: what the task carries besides
    (its result, its count of deaths) is kept. ``values`` are the columns' values or binds."""
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_tasks)
    statement = statement.values(values)
    kept = {"id", "created_at"}
    return statement.on_conflict_do_update(
        index_elements=[_tasks.c.id],
        set_={name: statement.excluded[name] for name in values if name not in kept},
    )


@dataclass(frozen=True, slots=True)
class AdmissionRows:
    """The rows one admission writes: its reservation (if any), task row and record."""

    reservation: dict[str, Any] | None
    task: dict[str, Any]
    decision: dict[str, Any]


def admission_rows(
    task_id: str,
    attempt: int,
    now: datetime,
    reservation: dict[str, Any] | None,
    task: dict[str, Any],
    decision: dict[str, Any],
) -> AdmissionRows:
    """The full rows of one admission (``reservation`` has the reservation's own columns)."""
    held = None
    if reservation is not None:
        held = {
            "task_id": task_id,
            "attempt": attempt,
            **reservation,
            "status": "held",
            "created_at": now,
        }
    return AdmissionRows(
        held,
        {"id": task_id, "attempt": attempt, **task, "created_at": now, "updated_at": now},
        {"task_id": task_id, "attempt": attempt, **decision, "created_at": now},
    )


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


def exists(conn: Connection, task_id: str, attempt: int) -> bool:
    """Whether the gate's decision on this attempt is in the ledger."""
    found = conn.execute(
        select(_decisions.c.id)
        .where(_decisions.c.task_id == task_id, _decisions.c.attempt == attempt)
        .limit(1)
    ).first()
    return found is not None


def task_row(conn: Connection, task_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(_tasks).where(_tasks.c.id == task_id)).first()
    return dict(row._mapping) if row is not None else None
