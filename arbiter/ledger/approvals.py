"""Approvals: a task the policy wants a human to see is parked until granted or rejected.

The approval keeps the policy's ``reason`` for parking it and, apart from it, the ``note``
the person who decided wrote, with who and when.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    insert,
    select,
    update,
)

from arbiter.errors import InputError
from arbiter.ledger.models import Approval, Task, table
from arbiter.ledger.windows import from_db

_approvals = table(Approval)
_tasks = table(Task)


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """One approval request and its parked task."""

    task_id: str
    kind: str
    status: str
    reason: str | None  # why the policy parked it
    requested_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    payload: dict[str, Any] | None
    note: str | None = None  # what the person who decided wrote
    confidential: bool = False
    submitted_at: datetime | None = None

    @property
    def job(self) -> dict[str, Any]:
        """The parked task's job message (kind, prompt, extra...)."""
        return dict(((self.payload or {}).get("kwargs") or {}).get("job") or {})

    @property
    def submitted_by(self) -> str | None:
        """Who submitted the task (recorded at submit), else where it came from."""
        job = self.job
        return (job.get("extra") or {}).get("submitted_by") or job.get("source")


def request(conn: Connection, task_id: str, reason: str | None, now: datetime) -> None:
    """Open a pending approval unless one is already pending for this task."""
    pending = conn.execute(
        select(_approvals.c.id).where(
            _approvals.c.task_id == task_id, _approvals.c.status == "pending"
        )
    ).first()
    if pending is None:
        conn.execute(
            insert(_approvals),
            {"task_id": task_id, "status": "pending", "reason": reason, "requested_at": now},
        )


def is_granted(conn: Connection, task_id: str) -> bool:
    """Whether a person granted the parked task."""
    found = conn.execute(
        select(_approvals.c.id)
        .where(_approvals.c.task_id == task_id, _approvals.c.status == "granted")
        .limit(1)
    ).first()
    return found is not None


def listing(conn: Connection, status: str | None) -> list[ApprovalRecord]:
    query = (
        select(
            _approvals,
            _tasks.c.kind,
            _tasks.c.payload,
            _tasks.c.confidential,
            _tasks.c.created_at.label("submitted_at"),
        )
        .join(_tasks, _tasks.c.id == _approvals.c.task_id)
        .order_by(_approvals.c.id)
    )
    if status is not None:
        query = query.where(_approvals.c.status == status)
    return [
        ApprovalRecord(
            task_id=row.task_id,
            kind=row.kind,
            status=row.status,
            reason=row.reason,
            requested_at=from_db(row.requested_at),
            decided_at=from_db(row.decided_at) if row.decided_at else None,
            decided_by=row.decided_by,
            payload=row.payload,
            note=row.note,
            confidential=bool(row.confidential),
            submitted_at=from_db(row.submitted_at) if row.submitted_at else None,
        )
        for row in conn.execute(query)
    ]


def decide(
    conn: Connection,
    task_id: str,
    *,
    granted: bool,
    decided_by: str,
    note: str | None,
    now: datetime,
) -> dict[str, Any]:
    """Grant or reject the pending approval; returns the parked task's payload."""
    result = conn.execute(
        update(_approvals)
        .where(_approvals.c.task_id == task_id, _approvals.c.status == "pending")
        .values(
            status="granted" if granted else "rejected",
            decided_by=decided_by,
            decided_at=now,
            note=note,
        )
    )
    if not result.rowcount:
        raise InputError(
            f"task {task_id} has no pending approval; "
            "list them with `sovereign pending` and use one of those ids"
        )
    payload = conn.execute(select(_tasks.c.payload).where(_tasks.c.id == task_id)).scalar()
    # A granted task goes back through the gate when it is republished; a rejected one is done.
    conn.execute(
        update(_tasks)
        .where(_tasks.c.id == task_id)
        .values(
            status="queued" if granted else "blocked",
            error=None if granted else f"approval rejected by {decided_by}",
            updated_at=now,
        )
    )
    return dict(payload or {})
