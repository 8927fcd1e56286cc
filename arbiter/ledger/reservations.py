"""Reservations and the calls that settle them.

A reservation holds the upper bound of a task attempt's cost from the moment the gate
admits it. Settling replaces it with the real cost, once per attempt: the unique
``(task_id, attempt)`` of ``model_calls`` makes a second settle a no-op. Releasing frees it
when nothing was billed; expiry frees what a dead worker left behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    Integer,
    String,
    Text,
    bindparam,
    func,
    insert,
    literal_column,
    select,
    update,
)

from arbiter.ledger.models import NANO, ModelCall, Reservation, Task, table
from arbiter.usage import Usage

_res = table(Reservation)
_calls = table(ModelCall)
_tasks = table(Task)


@dataclass(frozen=True, slots=True)
class Timings:
    """When the backend call started and finished (aware datetimes)."""

    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def latency_ms(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds() * 1000.0


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A billed model call as the ledger holds it."""

    task_id: str
    attempt: int
    tier: str
    provider: str
    model: str
    usage: Usage
    cost_usd: float
    status: str
    result: dict[str, Any] | None
    charged: bool = True  # False when this settle found the attempt already settled

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


def insert_reservation(
    conn: Connection,
    *,
    task_id: str,
    attempt: int,
    amount_nusd: int,
    tokens: int,
    tier: str,
    provider: str,
    model: str,
    now: datetime,
    expires_at: datetime,
) -> None:
    conn.execute(
        insert(_res),
        {
            "task_id": task_id,
            "attempt": attempt,
            "amount_nusd": amount_nusd,
            "tokens": tokens,
            "tier": tier,
            "provider": provider,
            "model": model,
            "status": "held",
            "created_at": now,
            "expires_at": expires_at,
        },
    )


CLOSE_HELD = (
    update(_res)
    .where(
        _res.c.task_id == bindparam("b_task_id", type_=String()),
        _res.c.attempt == bindparam("b_attempt", type_=Integer()),
        _res.c.status == literal_column("'held'"),
    )
    .values(
        status=bindparam("b_new_status", type_=String()),
        reason=bindparam("b_reason", type_=Text()),
        closed_at=bindparam("b_closed_at", type_=DateTime()),
    )
)


def close_held(
    conn: Connection, task_id: str, attempt: int, status: str, reason: str | None, now: datetime
) -> int:
    """Move the attempt's held reservations to ``status``; returns how many."""
    result = conn.execute(
        CLOSE_HELD,
        {
            "b_task_id": task_id,
            "b_attempt": attempt,
            "b_new_status": status,
            "b_reason": reason,
            "b_closed_at": now,
        },
    )
    return int(result.rowcount or 0)


def held_tier(conn: Connection, task_id: str, attempt: int) -> str | None:
    return conn.execute(
        select(_res.c.tier)
        .where(_res.c.task_id == task_id, _res.c.attempt == attempt)
        .order_by(_res.c.id.desc())
        .limit(1)
    ).scalar()


def held_amount(conn: Connection, task_id: str, attempt: int) -> int:
    """Nano-dollars held for the attempt (0 when nothing is held)."""
    amount = conn.execute(
        select(func.coalesce(func.sum(_res.c.amount_nusd), 0)).where(
            _res.c.task_id == task_id, _res.c.attempt == attempt, _res.c.status == "held"
        )
    ).scalar()
    return int(amount or 0)


def is_held(conn: Connection, task_id: str, attempt: int) -> bool:
    found = conn.execute(
        select(_res.c.id)
        .where(_res.c.task_id == task_id, _res.c.attempt == attempt, _res.c.status == "held")
        .limit(1)
    ).first()
    return found is not None


def find_call(conn: Connection, task_id: str, attempt: int) -> CallRecord | None:
    row = conn.execute(
        select(_calls).where(_calls.c.task_id == task_id, _calls.c.attempt == attempt)
    ).first()
    if row is None:
        return None
    usage = Usage(
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cached_tokens=row.cached_tokens,
        cache_write_tokens=row.cache_write_tokens,
        convention="separate",
    )
    return CallRecord(
        task_id=row.task_id,
        attempt=row.attempt,
        tier=row.tier,
        provider=row.provider,
        model=row.model,
        usage=usage,
        cost_usd=row.cost_nusd / NANO,
        status=row.status,
        result=row.result,
        charged=False,
    )


def insert_call(
    conn: Connection,
    *,
    task_id: str,
    attempt: int,
    tier: str,
    provider: str,
    model: str,
    usage: Usage,
    cost_nusd: int,
    status: str,
    error: str | None,
    timings: Timings,
    result: dict[str, Any] | None,
    now: datetime,
    to_db: Any,
    reserved_nusd: int | None = None,
) -> None:
    """Record a billed call. Tokens are stored with cached ones apart from ``input_tokens``."""
    conn.execute(
        insert(_calls),
        {
            "task_id": task_id,
            "attempt": attempt,
            "tier": tier,
            "provider": provider,
            "model": model,
            "input_tokens": usage.uncached_input_tokens,
            "output_tokens": usage.output_tokens,
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "total_tokens": usage.total_tokens,
            "cost_nusd": cost_nusd,
            "status": status,
            "error": error,
            "started_at": to_db(timings.started_at) if timings.started_at else None,
            "finished_at": to_db(timings.finished_at) if timings.finished_at else None,
            "latency_ms": timings.latency_ms,
            "result": result,
            "recorded_at": now,
            "reserved_nusd": reserved_nusd,
        },
    )


def update_task(conn: Connection, task_id: str, now: datetime, **values: Any) -> None:
    conn.execute(update(_tasks).where(_tasks.c.id == task_id).values(updated_at=now, **values))


def expire_held(conn: Connection, now: datetime, deadline: datetime) -> list[tuple[str, int]]:
    """Expire every held reservation whose ``expires_at`` is before ``deadline``.

    ``deadline`` is ``now`` unless the caller shortens or lengthens every TTL at once.
    Returns the ``(task, attempt)`` pairs expired.
    """
    rows = conn.execute(
        select(_res.c.id, _res.c.task_id, _res.c.attempt).where(
            _res.c.status == "held", _res.c.expires_at < deadline
        )
    ).all()
    if not rows:
        return []
    conn.execute(
        update(_res)
        .where(_res.c.id.in_([r.id for r in rows]), _res.c.status == "held")
        .values(status="expired", reason="reservation expired: no worker settled it", closed_at=now)
    )
    stale = [(r.task_id, r.attempt) for r in rows]
    conn.execute(
        update(_tasks)
        .where(
            _tasks.c.id.in_([t for t, _ in stale]),
            _tasks.c.status.in_(("queued", "running")),
        )
        .values(
            status="failed",
            error="its reservation expired before a worker settled it",
            updated_at=now,
        )
    )
    return stale
