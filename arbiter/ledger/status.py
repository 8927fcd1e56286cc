"""What the status screen and the daily summary read from the ledger, besides the budget
facts: held reservations, poisoned tasks, pending approvals, the last refusals, and spend
per day and provider."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, select

from arbiter.ledger.models import (
    NANO,
    Approval,
    DecisionRecord,
    ModelCall,
    Reservation,
    Task,
    table,
)
from arbiter.ledger.windows import from_db

_res = table(Reservation)
_tasks = table(Task)
_approvals = table(Approval)
_decisions = table(DecisionRecord)
_calls = table(ModelCall)
BLOCKED = ("deny", "halt")


@dataclass(frozen=True, slots=True)
class Blocked:
    """A refused decision: which task, by which rule, and why."""

    task_id: str
    attempt: int
    verdict: str
    decided_by: str | None
    reason: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Poisoned:
    """A task failed for good because it kept killing its worker."""

    task_id: str
    kind: str
    error: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class LedgerStatus:
    """Counts and recent rows for the status screen."""

    held_count: int
    held_usd: float
    held_by_tier: dict[str, float]
    pending_approvals: int
    poisoned_count: int
    poisoned: list[Poisoned] = field(default_factory=list)
    blocked: list[Blocked] = field(default_factory=list)


def ledger_status(conn: Connection, recent: int = 10) -> LedgerStatus:
    """Held reservations, pending approvals, poisoned tasks and the last refusals."""
    held: dict[str, tuple[int, int]] = {
        str(tier): (int(count), int(nusd))
        for tier, count, nusd in conn.execute(
            select(_res.c.tier, func.count(), func.coalesce(func.sum(_res.c.amount_nusd), 0))
            .where(_res.c.status == "held")
            .group_by(_res.c.tier)
        )
    }
    pending = conn.execute(
        select(func.count()).select_from(_approvals).where(_approvals.c.status == "pending")
    ).scalar_one()
    poisoned_count = conn.execute(
        select(func.count()).select_from(_tasks).where(_tasks.c.status == "poisoned")
    ).scalar_one()
    poisoned = [
        Poisoned(row.id, row.kind, row.error, from_db(row.updated_at))
        for row in conn.execute(
            select(_tasks.c.id, _tasks.c.kind, _tasks.c.error, _tasks.c.updated_at)
            .where(_tasks.c.status == "poisoned")
            .order_by(_tasks.c.updated_at.desc())
            .limit(recent)
        )
    ]
    d = _decisions.c
    blocked = [
        Blocked(
            row.task_id,
            int(row.attempt),
            row.verdict,
            row.decided_by,
            row.reason,
            from_db(row.created_at),
        )
        for row in conn.execute(
            select(d.task_id, d.attempt, d.verdict, d.decided_by, d.reason, d.created_at)
            .where(d.verdict.in_(BLOCKED))
            .order_by(d.id.desc())
            .limit(recent)
        )
    ]
    return LedgerStatus(
        held_count=sum(count for count, _ in held.values()),
        held_usd=sum(nusd for _, nusd in held.values()) / NANO,
        held_by_tier={tier: nusd / NANO for tier, (_, nusd) in sorted(held.items())},
        pending_approvals=int(pending),
        poisoned_count=int(poisoned_count),
        poisoned=poisoned,
        blocked=blocked,
    )


def spend_by_day(
    conn: Connection, first: date, last: date, zone: ZoneInfo, since: datetime
) -> dict[str, dict[str, float]]:
    """Settled spend per local day and provider, in USD, for every day ``first``..``last``
    (days with no spend map to {}). ``since`` is ``first``'s local midnight, naive UTC."""
    days: dict[str, dict[str, int]] = {}
    day = first
    while day <= last:
        days[day.isoformat()] = {}
        day += timedelta(days=1)
    c = _calls.c
    # Days are local calendar days: converted in Python, the same on both databases.
    for recorded, provider, nusd in conn.execute(
        select(c.recorded_at, c.provider, c.cost_nusd).where(c.recorded_at >= since)
    ):
        key = from_db(recorded).astimezone(zone).date().isoformat()
        if key in days:
            by = days[key]
            by[str(provider)] = by.get(str(provider), 0) + int(nusd)
    return {
        key: {provider: nusd / NANO for provider, nusd in sorted(by.items())}
        for key, by in days.items()
    }


def tasks_since(conn: Connection, since: datetime) -> dict[str, int]:
    """Tasks created since ``since`` (naive UTC), counted by status."""
    rows: Any = conn.execute(
        select(_tasks.c.status, func.count())
        .where(_tasks.c.created_at >= since)
        .group_by(_tasks.c.status)
    )
    return {str(status): int(count) for status, count in rows}
