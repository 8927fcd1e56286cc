"""Worker leases: how the ledger learns that a worker died with a task in its hands.

A worker marks an attempt ``running`` just before its model call, with a lease it renews
while the call lasts. Two things reveal a death: the broker hands the same attempt to a
worker again while the ledger still shows it running (a killed pool process, whose
message Celery requeues at once), or the lease runs out (a whole worker killed; the
maintenance sweep finds it). Either way the call may have been billed, so the attempt is
charged its full reservation as "usage unknown", and the task counts one more death. The
caller then runs it again as a new attempt, through the gate, with a reservation of its
own, or, after ``poison_after`` deaths, fails it as poisoned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from arbiter.ledger import reservations
from arbiter.ledger.models import Reservation, Task, table
from arbiter.usage import Usage

_tasks = table(Task)
_res = table(Reservation)
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Death:
    """An attempt whose worker died in it, as charged."""

    task_id: str
    attempt: int
    died: int  # deliveries of the task that died so far
    payload: dict[str, Any] | None
    charged_nusd: int
    tokens: int
    cloud: bool


def charge_unknown(
    conn: Connection,
    task_id: str,
    attempt: int,
    now: datetime,
    reason: str,
    to_db: Any,
    *,
    died: bool = True,
) -> Death:
    """Charge the attempt's held reservation in full, and count the death on the task
    (unless ``died`` is False: a call cut short by the task's time limit)."""
    held = conn.execute(
        select(
            func.coalesce(func.sum(_res.c.amount_nusd), 0),
            func.coalesce(func.sum(_res.c.tokens), 0),
            func.max(_res.c.tier),
            func.max(_res.c.provider),
            func.max(_res.c.model),
        ).where(_res.c.task_id == task_id, _res.c.attempt == attempt, _res.c.status == "held")
    ).one()
    amount, tokens = int(held[0]), int(held[1])
    if reservations.find_call(conn, task_id, attempt) is None:
        reservations.insert_call(
            conn,
            task_id=task_id,
            attempt=attempt,
            tier=held[2] or "local",
            provider=held[3] or "",
            model=held[4] or "",
            usage=Usage(input_tokens=tokens),
            cost_nusd=amount,
            status=UNKNOWN,
            error=reason,
            timings=reservations.Timings(),
            result=None,
            now=now,
            to_db=to_db,
            reserved_nusd=amount,
        )
    reservations.close_held(conn, task_id, attempt, "settled", reason, now)
    row = conn.execute(
        update(_tasks)
        .where(_tasks.c.id == task_id)
        .values(
            died=_tasks.c.died + int(died),
            status="queued" if died else "failed",
            error=reason,
            lease_until=None,
            worker=None,
            updated_at=now,
        )
        .returning(_tasks.c.died, _tasks.c.payload)
    ).one()
    return Death(task_id, attempt, int(row.died), row.payload, amount, tokens, held[2] == "cloud")


def expired(conn: Connection, now: datetime) -> list[tuple[str, int]]:
    """Running attempts whose lease ran out before ``now``."""
    rows = conn.execute(
        select(_tasks.c.id, _tasks.c.attempt).where(
            _tasks.c.status == "running", _tasks.c.lease_until < now
        )
    ).all()
    return [(row.id, row.attempt) for row in rows]


def renew(conn: Connection, task_id: str, attempt: int, until: datetime) -> bool:
    """Extend a running attempt's lease; False when it is no longer running here."""
    result = conn.execute(
        update(_tasks)
        .where(_tasks.c.id == task_id, _tasks.c.attempt == attempt, _tasks.c.status == "running")
        .values(lease_until=until)
    )
    return bool(result.rowcount)


def poison(conn: Connection, task_id: str, now: datetime, reason: str) -> None:
    """The task is never run again."""
    conn.execute(
        update(_tasks)
        .where(_tasks.c.id == task_id)
        .values(status="poisoned", error=reason, lease_until=None, updated_at=now)
    )
