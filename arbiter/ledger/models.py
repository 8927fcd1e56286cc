"""The ledger's tables, as SQLAlchemy 2.x declarative models.

Money is stored as whole nano-dollars (``*_nusd``, 1 USD = 10**9) in 64-bit integers, so
sums are exact on SQLite and PostgreSQL alike and a cap holds to the last digit. Times are
naive UTC. Statuses are short strings checked by constraints rather than database enums,
which keeps migrations simple on both databases.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NANO = 1_000_000_000  # nano-dollars per US dollar

TASK_STATUSES = (
    "queued", "running", "succeeded", "failed", "blocked", "parked", "poisoned",
)  # fmt: skip
RESERVATION_STATUSES = ("held", "settled", "released", "expired")
APPROVAL_STATUSES = ("pending", "granted", "rejected")
TOPIC_STATUSES = ("queued", "running", "done", "denied", "failed", "waiting")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so migrations name constraints alike."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Task(Base):
    """A unit of work the gate has seen, and enough of its message to publish it later."""

    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint(_one_of("status", TASK_STATUSES), name="status"),
        # Only the gate's count of today's research cycles needs an index by time.
        Index(
            "ix_tasks_research_created",
            "created_at",
            sqlite_where=text("kind = 'research'"),
            postgresql_where=text("kind = 'research'"),
        ),
        # The maintenance sweep looks for running tasks whose lease ran out.
        Index(
            "ix_tasks_running_lease",
            "lease_until",
            sqlite_where=text("status = 'running'"),
            postgresql_where=text("status = 'running'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    queue: Mapped[str | None] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    confidential: Mapped[bool] = mapped_column(Boolean, default=False)
    depth: Mapped[int] = mapped_column(Integer, default=0)
    topic: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    # While running: the worker's lease, which it renews; one that runs out means it died.
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    worker: Mapped[str | None] = mapped_column(String(255))
    died: Mapped[int] = mapped_column(Integer, server_default="0")


class Reservation(Base):
    """Budget held for one task attempt until it is settled, released or expired."""

    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint(_one_of("status", RESERVATION_STATUSES), name="status"),
        CheckConstraint("amount_nusd >= 0", name="amount"),
        Index("ix_reservations_task_attempt", "task_id", "attempt"),
        # The expiry sweep looks for held reservations past their time.
        Index(
            "ix_reservations_held",
            "status",
            "expires_at",
            sqlite_where=text("status = 'held'"),
            postgresql_where=text("status = 'held'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    amount_nusd: Mapped[int] = mapped_column(BigInteger)
    tokens: Mapped[int] = mapped_column(BigInteger)
    tier: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime)


class ModelCall(Base):
    """One billed model call: at most one per task attempt, which makes settling idempotent."""

    __tablename__ = "model_calls"
    __table_args__ = (
        UniqueConstraint("task_id", "attempt", name="uq_model_calls_task_attempt"),
        Index("ix_model_calls_recorded", "recorded_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    tier: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    total_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_nusd: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    recorded_at: Mapped[datetime] = mapped_column(DateTime)
    # What the attempt held when it settled: a cost above it is a defect, and is logged.
    reserved_nusd: Mapped[int | None] = mapped_column(BigInteger)


class UsageDay(Base):
    """Settled usage per local calendar day, kept as calls settle, so the gate reads a
    month's spend from at most 31 rows instead of summing every call."""

    __tablename__ = "usage_days"

    zone: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    cost_nusd: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cloud_calls: Mapped[int] = mapped_column(BigInteger, default=0)
    calls: Mapped[int] = mapped_column(BigInteger, default=0)


class UsageMinute(Base):
    """Settled tokens per UTC minute, so the rolling hour reads at most 60 rows plus the
    calls of the one minute the hour starts in. Rows older than two hours are pruned."""

    __tablename__ = "usage_minutes"

    minute: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)


class DecisionRecord(Base):
    """The audit record of one gate decision: what was known, what was decided, and why."""

    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_task", "task_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    policy_version: Mapped[str | None] = mapped_column(String(128))
    verdict: Mapped[str] = mapped_column(String(16))
    route: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    candidate: Mapped[str | None] = mapped_column(String(128))
    decided_by: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    retry_after_s: Mapped[float | None] = mapped_column(Float)
    reserved_nusd: Mapped[int] = mapped_column(BigInteger, default=0)
    facts: Mapped[dict[str, Any]] = mapped_column(JSON)
    trace: Mapped[list[Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Approval(Base):
    """A human's yes or no for a parked task."""

    __tablename__ = "approvals"
    __table_args__ = (
        CheckConstraint(_one_of("status", APPROVAL_STATUSES), name="status"),
        Index("ix_approvals_task", "task_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)  # why the policy parked it
    requested_at: Mapped[datetime] = mapped_column(DateTime)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime)
    decided_by: Mapped[str | None] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text)  # what the person who decided wrote


class ResearchTopic(Base):
    """A topic in the research backlog; follow-ups point at their parent."""

    __tablename__ = "research_topics"
    __table_args__ = (
        CheckConstraint(_one_of("status", TOPIC_STATUSES), name="status"),
        Index("ix_research_topics_status", "status", "id"),
        Index("ix_research_topics_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    topic: Mapped[str] = mapped_column(Text)
    depth: Mapped[int] = mapped_column(Integer, default=0)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("research_topics.id"))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Topics proposed by confidential research are confidential too.
    confidential: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    parent_task: Mapped[str | None] = mapped_column(String(64))  # the research that proposed it
    # Higher first; beat takes the highest-priority queued topics, oldest first among equals.
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    tags: Mapped[list[Any] | None] = mapped_column(JSON)
    # Waiting (a daily cap refused it): not submitted again before this time.
    wait_until: Mapped[datetime | None] = mapped_column(DateTime)
    reason: Mapped[str | None] = mapped_column(Text)  # why it waits, was denied or failed
    task_id: Mapped[str | None] = mapped_column(String(64))  # its latest research task
    # Queued again as an escalation: the local brief's confidence and id.
    local_confidence: Mapped[float | None] = mapped_column(Float)
    escalate_from: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))


class ResearchBrief(Base):
    """The structured brief a research task produced for a topic, with its confidence."""

    __tablename__ = "research_briefs"
    __table_args__ = (
        Index("ix_research_briefs_task", "task_id"),
        Index("ix_research_briefs_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("research_topics.id"), index=True)
    task_id: Mapped[str | None] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)  # the summary
    created_at: Mapped[datetime] = mapped_column(DateTime)
    key_points: Mapped[list[Any] | None] = mapped_column(JSON)
    follow_ups: Mapped[list[Any] | None] = mapped_column(JSON)
    sources: Mapped[list[Any] | None] = mapped_column(JSON)
    confidence: Mapped[float | None] = mapped_column(Float)  # computed (tasks/confidence.py)
    signals: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # what the confidence rests on
    provider: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(128))
    tier: Mapped[str | None] = mapped_column(String(16))
    # An escalated brief points at the local brief it was escalated from.
    escalated_from: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))


class PublishedPolicy(Base):
    """A policy version a person published; exactly one is active at a time."""

    __tablename__ = "published_policies"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    version: Mapped[str] = mapped_column(String(128))
    sources: Mapped[dict[str, Any]] = mapped_column(JSON)
    published_at: Mapped[datetime] = mapped_column(DateTime)
    published_by: Mapped[str | None] = mapped_column(String(128))
    active: Mapped[bool] = mapped_column(Boolean, default=False)


HALT_SCOPES = ("all", "cloud", "local")


class Halt(Base):
    """The kill switch: one row per scope (all, cloud, local), on while ``halted``."""

    __tablename__ = "halts"
    __table_args__ = (CheckConstraint(_one_of("scope", HALT_SCOPES), name="scope"),)

    scope: Mapped[str] = mapped_column(String(8), primary_key=True)
    halted: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text)
    since: Mapped[datetime | None] = mapped_column(DateTime)
    halted_by: Mapped[str | None] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class HaltedTask(Base):
    """A queued task a worker set aside because its scope was halted. It is published
    again, as the same attempt and through the gate, once that scope resumes."""

    __tablename__ = "halted_tasks"

    task_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer)
    tier: Mapped[str] = mapped_column(String(16))  # its route's tier: which scopes hold it
    since: Mapped[datetime] = mapped_column(DateTime)


class HeldTotals(Base):
    """One row: the sums over every held reservation, kept by database triggers.

    The gate reads budgets on every decision; summing the held rows each time would grow
    with the queue's backlog. Triggers on ``reservations`` keep these totals exact on every
    path that takes, settles, releases or expires a reservation.
    """

    __tablename__ = "held_totals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    nusd: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cloud: Mapped[int] = mapped_column(BigInteger, default=0)


def table(model: type[Base]) -> Table:
    """The Core table of a model, typed as such for statements."""
    return cast(Table, model.__table__)


# --- alerts (issue 13) -----------------------------------------------------------------

ALERT_STATUSES = ("sending", "sent", "failed")


class SentAlert(Base):
    """A message for the alert webhook, keyed so the same news goes out once.

    The key says what makes two messages the same (a cap reached is one key a day, a
    poisoned task one key per task); the row is claimed before the message is posted.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        CheckConstraint(_one_of("status", ALERT_STATUSES), name="status"),
        UniqueConstraint("key", name="uq_alerts_key"),
        Index("ix_alerts_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)


# --- the studio's notes index (issue 12) ------------------------------------------------


class NoteFile(Base):
    """A file of the notes folder as last indexed: its path relative to the folder, what
    its stat and content were then, and why it was skipped (not UTF-8 text), if it was."""

    __tablename__ = "notes_files"
    __table_args__ = (UniqueConstraint("path", name="uq_notes_files_path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String(1024))
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    skipped: Mapped[str | None] = mapped_column(String(255))
    indexed_at: Mapped[datetime] = mapped_column(DateTime)


class NotePassage(Base):
    """One passage of a note (a heading's paragraphs, a few hundred words at most).

    Its full-text index is outside the models: an FTS5 table over ``text`` on SQLite, a
    GIN index on a stored tsvector column on PostgreSQL (migration 0014,
    ``arbiter.ledger.notes``).
    """

    __tablename__ = "notes_passages"
    __table_args__ = (Index("ix_notes_passages_file_id", "file_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("notes_files.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
