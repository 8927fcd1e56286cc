"""Budget and research facts, read in one statement so they are one consistent snapshot.

Each budget figure is settled usage in its window plus every reservation still held: held
money is committed whatever the window it was taken in, so it counts everywhere until it
is settled, released or expired. Settled usage comes from the per-day and per-minute
running totals (``usage_totals``); held money from ``held_totals``, which triggers keep
equal to the sum over held reservations (tests compare both with direct sums). Every
other figure is a direct count over an index.

Adding a fact: one column in ``_build`` and one line in ``snapshot_from`` and the policy
guide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Date,
    DateTime,
    Integer,
    String,
    and_,
    bindparam,
    case,
    func,
    literal_column,
    select,
    true,
)
from sqlalchemy.sql import Select

from arbiter.ledger.models import (
    HALT_SCOPES,
    NANO,
    Halt,
    HeldTotals,
    ModelCall,
    ResearchTopic,
    Reservation,
    Task,
    UsageDay,
    UsageMinute,
    table,
)
from arbiter.ledger.windows import Windows

RESEARCH_KIND = "research"


def _sql(value: str) -> Any:
    """A constant written into the SQL, not bound: a prepared statement's generic plan
    then sees it (and can use the partial indexes that name it)."""
    return literal_column(value)


ZERO: Any = _sql("0")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the gate reads before deciding: budget and research facts, the kill switch."""

    budget: dict[str, Any]
    research: dict[str, Any]
    halts: dict[str, str]  # the halted scopes (all, cloud, local) and their reasons
    own_held: int  # reservations already held by the attempt being decided

    @property
    def halted(self) -> bool:
        """``system.halted``: scope all is on."""
        return "all" in self.halts

    @property
    def halted_scopes(self) -> list[str]:
        """``system.halted_scopes``: the scopes that are on."""
        return sorted(self.halts)


def _sum(column: Any, condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, column), else_=ZERO)), ZERO)


def _build() -> Select[Any]:
    """The snapshot statement, with the window starts and the attempt as parameters."""
    hour = bindparam("hour_start", type_=DateTime())
    day = bindparam("day_start", type_=DateTime())
    today = bindparam("today", type_=Date())
    days = table(UsageDay).c
    settled = (
        select(
            _sum(days.cost_nusd, days.day == today).label("day_nusd"),
            func.coalesce(func.sum(days.cost_nusd), ZERO).label("month_nusd"),
            _sum(days.tokens, days.day == today).label("day_tokens"),
            _sum(days.cloud_calls, days.day == today).label("day_calls"),
        )
        .where(
            days.zone == bindparam("zone", type_=String()),
            days.day >= bindparam("month_first", type_=Date()),
        )
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
    totals = table(HeldTotals).c
    # By its key, not a scan: the row is updated on every hold, and the dead versions
    # left between two vacuums must not slow the read.
    held_all = (
        select(
            totals.nusd.label("nusd"), totals.tokens.label("tokens"), totals.cloud.label("cloud")
        )
        .where(totals.id == _sql("1"))
        .subquery("held_all")
    )
    # What the attempt being decided holds already: left out, since it is replaced. The
    # attempt's rows are found by its own index; "held" is tested on those few rows, not in
    # the WHERE, where it would let the planner pick the index of every held reservation
    # and scan them all (it did, on a young table with no statistics).
    res = table(Reservation).c
    held = res.status == _sql("'held'")
    own = (
        select(
            _sum(_sql("1"), held).label("own_count"),
            _sum(res.amount_nusd, held).label("own_nusd"),
            _sum(res.tokens, held).label("own_tokens"),
            _sum(_sql("1"), and_(held, res.tier == _sql("'cloud'"))).label("own_cloud"),
        )
        .where(
            res.task_id == bindparam("task_id", type_=String()),
            res.attempt == bindparam("attempt", type_=Integer()),
        )
        .subquery("own")
    )
    tasks = table(Task).c
    cycles = select(func.count()).where(
        tasks.kind == _sql(f"'{RESEARCH_KIND}'"),
        tasks.created_at >= day,
        tasks.status != _sql("'blocked'"),
        tasks.status != _sql("'parked'"),
    )
    # Escalations admitted today: research re-submitted because a local brief was unsure.
    escalations = select(func.count()).where(
        tasks.kind == _sql(f"'{RESEARCH_KIND}'"),
        tasks.created_at >= day,
        tasks.source == _sql("'escalation'"),
        tasks.status != _sql("'blocked'"),
        tasks.status != _sql("'parked'"),
    )
    topics = table(ResearchTopic).c
    # A follow-up is any topic proposed by research (depth > 0), whether that research
    # came from the backlog or from `submit`.
    followups = select(func.count()).where(topics.created_at >= day, topics.depth > ZERO)
    # The backlog: topics still to be researched, whether queued or waiting for a cap.
    backlog = select(func.count()).where(topics.status.in_([_sql("'queued'"), _sql("'waiting'")]))
    # The kill switch: per scope, its reason while it is on, else null.
    halts = table(Halt).c

    def halt(scope: str) -> Any:
        return select(func.coalesce(halts.reason, _sql("''"))).where(
            halts.scope == _sql(f"'{scope}'"), halts.halted.is_(true())
        )

    return select(
        settled,
        held_all,
        own,
        whole.scalar_subquery().label("hour_whole"),
        edge.scalar_subquery().label("hour_edge"),
        cycles.scalar_subquery().label("cycles"),
        escalations.scalar_subquery().label("escalations"),
        followups.scalar_subquery().label("followups"),
        backlog.scalar_subquery().label("backlog"),
        halt("all").scalar_subquery().label("halt_all"),
        halt("cloud").scalar_subquery().label("halt_cloud"),
        halt("local").scalar_subquery().label("halt_local"),
    ).select_from(settled.join(held_all, true()).join(own, true()))


STATEMENT = _build()


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
    held_cloud = int(row["cloud"]) - int(row["own_cloud"])
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
        "escalations_today": int(row["escalations"]),
    }
    halts = {s: row[f"halt_{s}"] for s in HALT_SCOPES if row[f"halt_{s}"] is not None}
    return Snapshot(budget, research, halts, int(row["own_count"]))


def read_snapshot(conn: Connection, w: Windows, task_id: str = "", attempt: int = -1) -> Snapshot:
    """The facts as of now, leaving out what ``(task_id, attempt)`` itself holds."""
    row = conn.execute(STATEMENT, snapshot_params(w, task_id, attempt)).one()
    return snapshot_from(row._mapping)


def read_facts(conn: Connection, w: Windows) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(budget, research)`` fact mappings as the policy language names them."""
    snapshot = read_snapshot(conn, w)
    return snapshot.budget, snapshot.research
