"""The research backlog: topics, claimed by beat a batch at a time, and their briefs.

A topic is ``queued`` until beat claims it (``running``); its research ends ``done``
(a brief), ``failed``, or ``denied`` by the policy. A topic a daily cap refused is
``waiting`` until ``wait_until``; one whose task waits for a person's approval is
``waiting`` with no end. A topic queued again as an escalation carries the local brief's
confidence (``local_confidence``) and id (``escalate_from``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from arbiter.ledger.models import ResearchBrief, ResearchTopic, Task, table
from arbiter.ledger.windows import from_db

_topics = table(ResearchTopic)
_briefs = table(ResearchBrief)
_tasks = table(Task)

TOPIC_STATUSES = ("queued", "running", "done", "denied", "failed", "waiting")
# A claim whose task never reached the gate (beat died in between) is queued again.
LOST_CLAIM = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Topic:
    """A research topic."""

    id: int
    text: str
    depth: int
    parent_id: int | None
    status: str
    confidential: bool = False
    priority: int = 0
    tags: tuple[str, ...] = ()
    wait_until: datetime | None = None
    reason: str | None = None
    task_id: str | None = None
    local_confidence: float | None = None
    escalate_from: int | None = None
    created_at: datetime | None = None
    parent_task: str | None = None


@dataclass(frozen=True, slots=True)
class Brief:
    """A brief as stored: the structured answer, its confidence and where it came from."""

    id: int
    topic_id: int
    task_id: str | None
    summary: str
    key_points: list[str] = field(default_factory=list)
    follow_ups: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    confidence: float | None = None
    signals: dict[str, Any] = field(default_factory=dict)
    provider: str | None = None
    model: str | None = None
    tier: str | None = None
    escalated_from: int | None = None
    created_at: datetime | None = None


def _topic(row: Any) -> Topic:
    return Topic(
        id=row.id,
        text=row.topic,
        depth=row.depth,
        parent_id=row.parent_id,
        status=row.status,
        confidential=bool(row.confidential),
        priority=int(row.priority or 0),
        tags=tuple(row.tags or ()),
        wait_until=from_db(row.wait_until) if row.wait_until else None,
        reason=row.reason,
        task_id=row.task_id,
        local_confidence=row.local_confidence,
        escalate_from=row.escalate_from,
        created_at=from_db(row.created_at) if row.created_at else None,
        parent_task=row.parent_task,
    )


def _brief(row: Any) -> Brief:
    return Brief(
        id=row.id,
        topic_id=row.topic_id,
        task_id=row.task_id,
        summary=row.text,
        key_points=list(row.key_points or []),
        follow_ups=list(row.follow_ups or []),
        sources=list(row.sources or []),
        confidence=row.confidence,
        signals=dict(row.signals or {}),
        provider=row.provider,
        model=row.model,
        tier=row.tier,
        escalated_from=row.escalated_from,
        created_at=from_db(row.created_at) if row.created_at else None,
    )


def add(
    conn: Connection,
    topic: str,
    depth: int,
    parent_id: int | None,
    now: datetime,
    confidential: bool = False,
    parent_task: str | None = None,
    *,
    priority: int = 0,
    tags: Sequence[str] = (),
    status: str = "queued",
    task_id: str | None = None,
) -> int:
    result = conn.execute(
        insert(_topics).returning(_topics.c.id),
        {
            "topic": topic,
            "depth": depth,
            "parent_id": parent_id,
            "status": status,
            "created_at": now,
            "confidential": confidential,
            "parent_task": parent_task,
            "priority": priority,
            "tags": list(tags) or None,
            "task_id": task_id,
        },
    )
    return int(result.scalar_one())


def _due(now: datetime) -> Any:
    return or_(
        _topics.c.status == "queued",
        and_(_topics.c.status == "waiting", _topics.c.wait_until <= now),
    )


def claim_due(conn: Connection, now: datetime, limit: int) -> list[Topic]:
    """Claim up to ``limit`` topics that may be submitted now: queued ones, and waiting
    ones whose wait is over; highest priority first, then oldest. Callers hold a
    serialized transaction (or the row locks, which PostgreSQL honours)."""
    rows = conn.execute(
        select(_topics)
        .where(_due(now))
        .order_by(_topics.c.priority.desc(), _topics.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return []
    conn.execute(
        update(_topics)
        .where(_topics.c.id.in_([r.id for r in rows]))
        .values(status="running", claimed_at=now, wait_until=None, reason=None, task_id=None)
    )
    return [_topic(r) for r in rows]


def claim_next(conn: Connection, now: datetime) -> Topic | None:
    """Claim the one topic beat would take next."""
    found = claim_due(conn, now, 1)
    return found[0] if found else None


def set_task(conn: Connection, topic_id: int, task_id: str) -> None:
    """Record the task researching the topic (its status is the worker's to change)."""
    conn.execute(update(_topics).where(_topics.c.id == topic_id).values(task_id=task_id))


def settle(
    conn: Connection,
    topic_id: int,
    status: str,
    reason: str | None,
    wait_until: datetime | None = None,
    task_id: str | None = None,
) -> None:
    """Set the outcome of a claimed topic's submission (``running`` topics only: a
    worker that finished first has the last word)."""
    values: dict[str, Any] = {"status": status, "reason": reason, "wait_until": wait_until}
    if task_id is not None:
        values["task_id"] = task_id
    conn.execute(
        update(_topics)
        .where(_topics.c.id == topic_id, _topics.c.status == "running")
        .values(**values)
    )


def unclaim(conn: Connection, topic_id: int) -> None:
    """Put a claimed topic back in the backlog (its task could not be queued)."""
    conn.execute(
        update(_topics)
        .where(_topics.c.id == topic_id, _topics.c.status == "running")
        .values(status="queued", claimed_at=None)
    )


def finish(conn: Connection, topic_id: int, status: str, reason: str | None) -> None:
    """The topic's research ended (done, failed or denied), whatever its state."""
    conn.execute(
        update(_topics)
        .where(_topics.c.id == topic_id)
        .values(status=status, reason=reason, wait_until=None)
    )


def escalate(conn: Connection, topic_id: int, local_confidence: float, brief_id: int) -> None:
    """Queue the topic again, as an escalation of the local brief ``brief_id``."""
    conn.execute(
        update(_topics)
        .where(_topics.c.id == topic_id)
        .values(
            status="queued",
            local_confidence=local_confidence,
            escalate_from=brief_id,
            reason=f"escalation of brief {brief_id} (local confidence {local_confidence:.2f})",
            wait_until=None,
        )
    )


def _in_flight() -> Any:
    """Topics whose task may still write a brief: running, or parked for a person."""
    return or_(
        _topics.c.status == "running",
        and_(_topics.c.status == "waiting", _topics.c.wait_until.is_(None)),
    )


def _lost(now: datetime) -> Any:
    """A claim whose task never reached the gate: no task row, long after the claim."""
    task = select(_tasks.c.id).where(_tasks.c.id == _topics.c.task_id)
    return and_(
        _topics.c.status == "running",
        _topics.c.claimed_at < now - LOST_CLAIM,
        ~task.exists(),
    )


def refused(conn: Connection) -> list[tuple[int, str]]:
    """Running topics whose task a later attempt's admission refused (a retry or a repair
    the gate denied): ``(topic id, task id)``, for beat to judge whether they wait."""
    rows = conn.execute(
        select(_topics.c.id, _tasks.c.id)
        .join(_tasks, _tasks.c.id == _topics.c.task_id)
        .where(_topics.c.status == "running", _tasks.c.status == "blocked")
    ).all()
    return [(int(topic_id), str(task_id)) for topic_id, task_id in rows]


def reconcile_needed(conn: Connection, now: datetime) -> bool:
    """Whether ``reconcile`` would change anything (a read, so idle ticks write nothing)."""
    ended = (
        select(_topics.c.id)
        .join(_tasks, _tasks.c.id == _topics.c.task_id)
        .where(_in_flight(), _tasks.c.status.in_(("failed", "poisoned", "blocked")))
    )
    lost = select(_topics.c.id).where(_lost(now))
    return conn.execute(ended.union_all(lost).limit(1)).first() is not None


def reconcile(conn: Connection, now: datetime) -> int:
    """End topics whose task ended without a brief (failed, poisoned, refused on a later
    attempt, its approval rejected), and queue again claims that never reached the gate;
    returns how many."""
    rows = conn.execute(
        select(_topics.c.id, _tasks.c.status, _tasks.c.error)
        .join(_tasks, _tasks.c.id == _topics.c.task_id)
        .where(_in_flight(), _tasks.c.status.in_(("failed", "poisoned", "blocked")))
    ).all()
    for row in rows:
        status = "denied" if row.status == "blocked" else "failed"
        finish(conn, row.id, status, row.error)
    lost = conn.execute(
        update(_topics).where(_lost(now)).values(status="queued", claimed_at=None, task_id=None)
    )
    return len(rows) + int(lost.rowcount or 0)


def save_brief(
    conn: Connection,
    topic_id: int,
    task_id: str | None,
    text: str,
    now: datetime,
    **fields: Any,
) -> int:
    """Store a brief and mark its topic done; ``fields`` are the other brief columns."""
    result = conn.execute(
        insert(_briefs).returning(_briefs.c.id),
        {"topic_id": topic_id, "task_id": task_id, "text": text, "created_at": now, **fields},
    )
    finish(conn, topic_id, "done", None)
    return int(result.scalar_one())


@dataclass(frozen=True, slots=True)
class Stored:
    """Where a brief went: its topic, its id, and the follow-up topics queued from it."""

    topic_id: int
    brief_id: int
    followup_ids: tuple[int, ...] = ()


def record(
    conn: Connection,
    *,
    topic_id: int | None,
    topic_text: str,
    task_id: str,
    depth: int,
    confidential: bool,
    summary: str,
    fields: dict[str, Any],
    escalate_at: float | None,
    followups: Sequence[str],
    now: datetime,
) -> Stored:
    """Store a brief (creating the topic of research submitted without one), queue the
    topic again as an escalation when ``escalate_at`` holds the local confidence, and queue
    the follow-ups one level deeper with the topic's confidentiality, priority and tags."""
    topic = get(conn, topic_id) if topic_id is not None else None
    if topic is None:
        created = add(
            conn, topic_text, depth, None, now, confidential, status="running", task_id=task_id
        )
        topic = get(conn, created)
        assert topic is not None
    brief_id = save_brief(conn, topic.id, task_id, summary, now, **fields)
    set_task(conn, topic.id, task_id)
    if escalate_at is not None:
        escalate(conn, topic.id, escalate_at, brief_id)
    ids = tuple(
        add(
            conn,
            text,
            depth + 1,
            topic.id,
            now,
            confidential or topic.confidential,
            task_id,
            priority=topic.priority,
            tags=topic.tags,
        )
        for text in followups
    )
    return Stored(topic.id, brief_id, ids)


def fail(conn: Connection, topic_id: int | None, task_id: str, reason: str) -> None:
    """The research of a topic failed for good."""
    if topic_id is not None:
        finish(conn, topic_id, "failed", reason)
        return
    found = by_task(conn, task_id)
    if found is not None:
        finish(conn, found.id, "failed", reason)


def get(conn: Connection, topic_id: int) -> Topic | None:
    row = conn.execute(select(_topics).where(_topics.c.id == topic_id)).first()
    return _topic(row) if row is not None else None


def by_task(conn: Connection, task_id: str) -> Topic | None:
    """The topic a task researched (the newest, should several name it)."""
    row = conn.execute(
        select(_topics).where(_topics.c.task_id == task_id).order_by(_topics.c.id.desc()).limit(1)
    ).first()
    return _topic(row) if row is not None else None


def listing(conn: Connection, status: str | None = None, limit: int = 500) -> list[Topic]:
    """Topics, the next to be taken first (priority, then age), then the rest by id."""
    query = select(_topics)
    if status is not None:
        query = query.where(_topics.c.status == status)
    rows = conn.execute(query.order_by(_topics.c.priority.desc(), _topics.c.id).limit(limit)).all()
    return [_topic(r) for r in rows]


def counts(conn: Connection) -> dict[str, int]:
    """Topics per status."""
    rows = conn.execute(select(_topics.c.status, func.count()).group_by(_topics.c.status)).all()
    return {str(status): int(n) for status, n in rows}


def briefs(conn: Connection, topic_id: int) -> list[str]:
    """The summaries of a topic's briefs, oldest first."""
    return [b.summary for b in brief_records(conn, topic_id)]


def brief_records(conn: Connection, topic_id: int | None = None, limit: int = 500) -> list[Brief]:
    """Briefs (one topic's, or all), oldest first."""
    query = select(_briefs)
    if topic_id is not None:
        query = query.where(_briefs.c.topic_id == topic_id)
    rows = conn.execute(query.order_by(_briefs.c.id.desc()).limit(limit)).all()
    return [_brief(r) for r in reversed(rows)]


def brief(conn: Connection, brief_id: int) -> Brief | None:
    row = conn.execute(select(_briefs).where(_briefs.c.id == brief_id)).first()
    return _brief(row) if row is not None else None


def escalations_of(conn: Connection, brief_id: int) -> list[int]:
    """Ids of the briefs escalated from ``brief_id``."""
    return [
        int(i)
        for i in conn.execute(
            select(_briefs.c.id).where(_briefs.c.escalated_from == brief_id)
        ).scalars()
    ]


def known_texts(conn: Connection, since: datetime) -> list[str]:
    """What a new follow-up must not repeat: every topic still to be researched (queued,
    running, waiting), and every topic created or briefed since ``since``."""
    briefed = select(_briefs.c.topic_id).where(_briefs.c.created_at >= since)
    rows = conn.execute(
        select(_topics.c.topic).where(
            or_(
                _topics.c.status.in_(("queued", "running", "waiting")),
                _topics.c.created_at >= since,
                _topics.c.id.in_(briefed),
            )
        )
    ).scalars()
    return [str(t) for t in rows]
