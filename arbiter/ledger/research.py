"""The research backlog: topics, claimed one at a time, and the briefs written for them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from arbiter.ledger.models import ResearchBrief, ResearchTopic, table

_topics = table(ResearchTopic)
_briefs = table(ResearchBrief)


@dataclass(frozen=True, slots=True)
class Topic:
    """A research topic."""

    id: int
    text: str
    depth: int
    parent_id: int | None
    status: str
    confidential: bool = False


def add(
    conn: Connection,
    topic: str,
    depth: int,
    parent_id: int | None,
    now: datetime,
    confidential: bool = False,
    parent_task: str | None = None,
) -> int:
    result = conn.execute(
        insert(_topics).returning(_topics.c.id),
        {
            "topic": topic,
            "depth": depth,
            "parent_id": parent_id,
            "status": "pending",
            "created_at": now,
            "confidential": confidential,
            "parent_task": parent_task,
        },
    )
    return int(result.scalar_one())


def claim_next(conn: Connection, now: datetime) -> Topic | None:
    """Claim the oldest pending topic. Callers hold a serialized transaction (or the
    row lock below, which PostgreSQL honours and SQLite ignores under BEGIN IMMEDIATE)."""
    row = conn.execute(
        select(_topics)
        .where(_topics.c.status == "pending")
        .order_by(_topics.c.depth, _topics.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if row is None:
        return None
    conn.execute(
        update(_topics).where(_topics.c.id == row.id).values(status="claimed", claimed_at=now)
    )
    return Topic(row.id, row.topic, row.depth, row.parent_id, "claimed", row.confidential)


def unclaim(conn: Connection, topic_id: int) -> None:
    """Put a claimed topic back in the backlog (its task could not be queued)."""
    conn.execute(
        update(_topics)
        .where(_topics.c.id == topic_id, _topics.c.status == "claimed")
        .values(status="pending", claimed_at=None)
    )


def save_brief(
    conn: Connection, topic_id: int, task_id: str | None, text: str, now: datetime
) -> int:
    result = conn.execute(
        insert(_briefs).returning(_briefs.c.id),
        {"topic_id": topic_id, "task_id": task_id, "text": text, "created_at": now},
    )
    conn.execute(update(_topics).where(_topics.c.id == topic_id).values(status="done"))
    return int(result.scalar_one())


def get(conn: Connection, topic_id: int) -> Topic | None:
    row = conn.execute(select(_topics).where(_topics.c.id == topic_id)).first()
    if row is None:
        return None
    return Topic(row.id, row.topic, row.depth, row.parent_id, row.status, row.confidential)


def briefs(conn: Connection, topic_id: int) -> list[str]:
    return list(
        conn.execute(
            select(_briefs.c.text).where(_briefs.c.topic_id == topic_id).order_by(_briefs.c.id)
        ).scalars()
    )
