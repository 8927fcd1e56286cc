"""Decision records and the task rows the gate writes alongside them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

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


def record(conn: Connection, values: dict[str, Any]) -> None:
    """Insert one decision record (``values`` names the table's columns)."""
    conn.execute(insert(_decisions), values)


def upsert_task(conn: Connection, values: dict[str, Any]) -> None:
    """Insert the task row, or update it when the task passes the gate again (a retry)."""
    task_id = values["id"]
    changed = {k: v for k, v in values.items() if k not in {"id", "created_at"}}
    result = conn.execute(update(_tasks).where(_tasks.c.id == task_id).values(**changed))
    if not result.rowcount:
        conn.execute(insert(_tasks), values)


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
