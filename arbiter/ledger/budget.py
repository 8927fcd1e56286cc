"""Budget and research facts, read in one statement so they are one consistent snapshot.

Each budget figure is settled usage in its window plus every reservation still held: held
money is committed whatever the window it was taken in, so it counts everywhere until it
is settled, released or expired. The statement is built once, with the window starts as
parameters, because the gate runs it on every decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Date,
    DateTime,
    Integer,
    String,
    bindparam,
    case,
    func,
    literal_column,
    select,
    true,
)
from sqlalchemy.sql import Select

from arbiter.ledger.models import (
    NANO,
    HeldTotals,
    LedgerVersion,
    ModelCall,
    ResearchTopic,
    Reservation,
    SystemState,
    Task,
    UsageDay,
    UsageMinute,
    table,
)
from arbiter.ledger.windows import Windows

RESEARCH_KIND = "research"
STATE_ROW = 1


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the gate reads before deciding: budget and research facts, the kill switch."""

    budget: dict[str, Any]
    research: dict[str, Any]
    halted: bool
    halt_reason: str | None
    own_held: int  # reservations already held by the attempt being decided
    version: int = 0  # the ledger's fact counter when this was read
    hour_oldest: datetime | None = None  # the oldest call in the rolling hour (naive UTC)
    row: Mapping[str, Any] | None = None  # the figures it was computed from

    def after(self, held: Mapping[str, Any] | None, kind: str, version: int) -> Snapshot | None:
        """The facts once an admission decided on this snapshot has written its rows.

        ``held`` is the reservation it took (if any), ``version`` the fact counter read
        after its writes. A reservation is the only fact an admission moves, except the
        research-cycle count, which depends on what the task row was before: None then,
        and when this snapshot left out holds of the attempt itself (they were closed).
        """
        if self.row is None or self.own_held or kind == RESEARCH_KIND:
            return None
        row = dict(self.row)
        if held is not None:
            row["nusd"] = int(row["nusd"]) + int(held["amount_nusd"])
            row["tokens"] = int(row["tokens"]) + int(held["tokens"])
            row["cloud_calls"] = int(row["cloud_calls"]) + (held["tier"] == "cloud")
        row["version"] = version
        return snapshot_from(row)


# Constants are written into the SQL rather than bound: fewer parameters travel, and a
# prepared statement's generic plan sees them (the one exception, the attempt's own held
# status, is bound on purpose: see ``own`` below).
ZERO: Any = literal_column("0")
ONE: Any = literal_column("1")
CLOUD: Any = literal_column("'cloud'")


def _sum(column: Any, condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, column), else_=ZERO)), ZERO)


def _count(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, ONE), else_=ZERO)), ZERO)


def _build(*, versioned: bool) -> Select[Any]:
    """The snapshot statement; ``versioned`` adds what the one-trip admission needs."""
    hour = bindparam("hour_start", type_=DateTime())
    day = bindparam("day_start", type_=DateTime())
    today = bindparam("today", type_=Date())
    month_first = bindparam("month_first", type_=Date())
    zone = bindparam("zone", type_=String())
    task_id = bindparam("task_id", type_=String())
    attempt = bindparam("attempt", type_=Integer())
    days = table(UsageDay).c
    settled = (
        select(
            _sum(days.cost_nusd, days.day == today).label("day_nusd"),
            func.coalesce(func.sum(days.cost_nusd), ZERO).label("month_nusd"),
            _sum(days.tokens, days.day == today).label("day_tokens"),
            _sum(days.cloud_calls, days.day == today).label("day_calls"),
        )
        .where(days.zone == zone, days.day >= month_first)
        .subquery("settled")
    )
    # The rolling hour: whole minutes from their running totals, plus the calls of the
    # minute the hour starts in, counted one by one so the edge stays exact.
    minutes = table(UsageMinute).c
    next_minute = bindparam("hour_next_minute", type_=DateTime())
    whole = select(func.coalesce(func.sum(minutes.tokens), ZERO)).where(
        minutes.minute >= next_minute
    )
    calls = table(ModelCall).c
    edge = select(func.coalesce(func.sum(calls.total_tokens), ZERO)).where(
        calls.recorded_at >= hour, calls.recorded_at < next_minute
    )
    # Held money, from the running totals the triggers keep (one row, whatever the backlog),
    # less what the attempt being decided already holds (a point lookup).
    totals = table(HeldTotals).c
    held_all = select(
        totals.nusd.label("nusd"),
        totals.tokens.label("tokens"),
        totals.cloud.label("cloud_calls"),
    ).subquery("held_all")
    res = table(Reservation).c
    own = (
        select(
            func.count().label("own_count"),
            func.coalesce(func.sum(res.amount_nusd), ZERO).label("own_nusd"),
            func.coalesce(func.sum(res.tokens), ZERO).label("own_tokens"),
            _count(res.tier == CLOUD).label("own_cloud"),
        )
        # Status is bound, not written in: the partial index of held rows must not tempt a
        # generic plan into scanning every held row when (task_id, attempt) finds one.
        .where(
            res.task_id == task_id,
            res.attempt == attempt,
            res.status == bindparam("held", "held", type_=String()),
        )
        .subquery("own")
    )
    tasks = table(Task).c
    cycles = select(func.count()).where(
        tasks.kind == literal_column(f"'{RESEARCH_KIND}'"),
        tasks.created_at >= day,
        tasks.status.not_in([literal_column("'blocked'"), literal_column("'parked'")]),
    )
    topics = table(ResearchTopic).c
    followups = select(func.count()).where(topics.parent_id.is_not(None), topics.created_at >= day)
    backlog = select(func.count()).where(topics.status == literal_column("'pending'"))
    # When the rolling hour will next change without a write: its oldest call drops out.
    oldest = select(func.min(calls.recorded_at)).where(calls.recorded_at >= hour)
    counter = table(LedgerVersion).c
    version = select(counter.version).where(counter.id == literal_column("1"))
    state = table(SystemState).c
    row: Any = literal_column(str(STATE_ROW))
    halted = select(state.halted).where(state.id == row)
    reason = select(state.reason).where(state.id == row)
    extra = (
        [oldest.scalar_subquery().label("hour_oldest"), version.scalar_subquery().label("version")]
        if versioned
        else []
    )
    return select(
        settled,
        held_all,
        own,
        whole.scalar_subquery().label("hour_whole"),
        edge.scalar_subquery().label("hour_edge"),
        cycles.scalar_subquery().label("cycles"),
        followups.scalar_subquery().label("followups"),
        backlog.scalar_subquery().label("backlog"),
        halted.scalar_subquery().label("halted"),
        reason.scalar_subquery().label("halt_reason"),
        *extra,
    ).select_from(settled.join(held_all, true()).join(own, true()))


STATEMENT = _build(versioned=False)
# Admissions also read the fact counter and when the rolling hour next moves.
VERSIONED_STATEMENT = _build(versioned=True)


def _probe() -> Select[Any]:
    counter = table(LedgerVersion).c
    res = table(Reservation).c
    own = select(func.count()).where(
        res.task_id == bindparam("task_id", type_=String()),
        res.attempt == bindparam("attempt", type_=Integer()),
        res.status == bindparam("held", "held", type_=String()),
    )
    return select(counter.version, own.scalar_subquery().label("own_held")).where(
        counter.id == literal_column("1")
    )


# Under the lock, whether facts read earlier still hold: the counter, and whether the
# attempt being decided holds anything already (the snapshot would have left that out).
PROBE = _probe()
VERSION = select(table(LedgerVersion).c.version).where(
    table(LedgerVersion).c.id == literal_column("1")
)


def snapshot_params(w: Windows, task_id: str = "", attempt: int = -1) -> dict[str, Any]:
    """The values the snapshot statement binds, for the windows ``w`` and one attempt."""
    return {
        "hour_start": w.hour_start,
        "hour_next_minute": w.hour_start.replace(second=0, microsecond=0) + timedelta(minutes=1),
        "day_start": w.day_start,
        "today": w.today,
        "month_first": w.month_first,
        "zone": w.zone,
        "task_id": task_id,
        "attempt": attempt,
    }


def snapshot_from(row: Mapping[Any, Any]) -> Snapshot:
    """The snapshot a row of ``STATEMENT`` describes."""
    held_nusd = int(row["nusd"]) - int(row["own_nusd"])
    held_tokens = int(row["tokens"]) - int(row["own_tokens"])
    held_cloud = int(row["cloud_calls"]) - int(row["own_cloud"])
    budget = {
        "daily_spend_usd": (int(row["day_nusd"]) + held_nusd) / NANO,
        "monthly_spend_usd": (int(row["month_nusd"]) + held_nusd) / NANO,
        "hourly_tokens": int(row["hour_whole"]) + int(row["hour_edge"]) + held_tokens,
        "daily_tokens": int(row["day_tokens"]) + held_tokens,
        "daily_cloud_calls": int(row["day_calls"]) + held_cloud,
    }
    research = {
        "cycles_today": int(row["cycles"]),
        "followups_today": int(row["followups"]),
        "backlog": int(row["backlog"]),
    }
    return Snapshot(
        budget,
        research,
        bool(row["halted"]),
        row["halt_reason"],
        int(row["own_count"]),
        int(row.get("version") or 0),
        _instant(row.get("hour_oldest")),
        row,
    )


def _instant(value: Any) -> datetime | None:
    """A stored timestamp as naive UTC (SQLite hands raw aggregates back as text)."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def read_snapshot(conn: Connection, w: Windows, task_id: str = "", attempt: int = -1) -> Snapshot:
    """The facts as of now, leaving out what ``(task_id, attempt)`` itself holds."""
    row = conn.execute(STATEMENT, snapshot_params(w, task_id, attempt)).one()
    return snapshot_from(row._mapping)


def read_facts(conn: Connection, w: Windows) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(budget, research)`` fact mappings as the policy language names them."""
    snapshot = read_snapshot(conn, w)
    return snapshot.budget, snapshot.research
