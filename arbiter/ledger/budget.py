"""Budget and research facts, read in one statement so they are one consistent snapshot.

Each budget figure is settled usage in its window plus every reservation still held: held
money is committed whatever the window it was taken in, so it counts everywhere until it
is settled, released or expired.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, case, func, select, true

from arbiter.ledger.models import NANO, ModelCall, ResearchTopic, Reservation, Task, table
from arbiter.ledger.windows import Windows

RESEARCH_KIND = "research"
ADMITTED_STATUSES = ("queued", "running", "succeeded", "failed")

_calls = table(ModelCall)
_held = table(Reservation)
_tasks = table(Task)
_topics = table(ResearchTopic)


def _sum(column: Any, condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, column), else_=0)), 0)


def _count(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _statement(w: Windows) -> Any:
    calls = _calls.c
    settled = (
        select(
            _sum(calls.cost_nusd, calls.recorded_at >= w.day_start).label("day_nusd"),
            _sum(calls.cost_nusd, calls.recorded_at >= w.month_start).label("month_nusd"),
            _sum(calls.total_tokens, calls.recorded_at >= w.hour_start).label("hour_tokens"),
            _sum(calls.total_tokens, calls.recorded_at >= w.day_start).label("day_tokens"),
            _count(and_(calls.tier == "cloud", calls.recorded_at >= w.day_start)).label(
                "day_cloud_calls"
            ),
        )
        .where(calls.recorded_at >= min(w.month_start, w.hour_start))
        .subquery("settled")
    )
    res = _held.c
    held = (
        select(
            func.coalesce(func.sum(res.amount_nusd), 0).label("nusd"),
            func.coalesce(func.sum(res.tokens), 0).label("tokens"),
            _count(res.tier == "cloud").label("cloud_calls"),
        )
        .where(res.status == "held")
        .subquery("held")
    )
    t = _tasks.c
    research = (
        select(func.count().label("cycles"))
        .where(
            t.kind == RESEARCH_KIND,
            t.created_at >= w.day_start,
            t.status.in_(ADMITTED_STATUSES),
        )
        .scalar_subquery()
    )
    topics = _topics.c
    followups = (
        select(func.count())
        .where(topics.parent_id.is_not(None), topics.created_at >= w.day_start)
        .scalar_subquery()
    )
    backlog = select(func.count()).where(topics.status == "pending").scalar_subquery()
    return select(
        settled.c.day_nusd,
        settled.c.month_nusd,
        settled.c.hour_tokens,
        settled.c.day_tokens,
        settled.c.day_cloud_calls,
        held.c.nusd,
        held.c.tokens,
        held.c.cloud_calls,
        research.label("cycles"),
        followups.label("followups"),
        backlog.label("backlog"),
    ).select_from(settled.join(held, true()))


def read_facts(conn: Connection, w: Windows) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(budget, research)`` fact mappings as the policy language names them."""
    row = conn.execute(_statement(w)).one()
    held_nusd, held_tokens, held_cloud = int(row.nusd), int(row.tokens), int(row.cloud_calls)
    budget = {
        "daily_spend_usd": (int(row.day_nusd) + held_nusd) / NANO,
        "monthly_spend_usd": (int(row.month_nusd) + held_nusd) / NANO,
        "hourly_tokens": int(row.hour_tokens) + held_tokens,
        "daily_tokens": int(row.day_tokens) + held_tokens,
        "daily_cloud_calls": int(row.day_cloud_calls) + held_cloud,
    }
    research = {
        "cycles_today": int(row.cycles),
        "followups_today": int(row.followups),
        "backlog": int(row.backlog),
    }
    return budget, research
