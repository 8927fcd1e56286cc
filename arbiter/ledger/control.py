"""The published policies: the ledger's small piece of shared state besides the kill
switch (``arbiter.ledger.halts``, whose ``HaltState`` is re-exported here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from arbiter.ledger.halts import HaltState as HaltState
from arbiter.ledger.models import PublishedPolicy, table
from arbiter.ledger.windows import from_db

_policies = table(PublishedPolicy)


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    """A published policy version."""

    version: str
    sources: dict[str, str]
    published_at: datetime
    published_by: str | None
    active: bool
    id: int = 0  # the row: one version may be published more than once (a rollback)


def publish(
    conn: Connection, version: str, sources: dict[str, str], by: str | None, now: datetime
) -> None:
    """Make ``version`` the one active policy."""
    conn.execute(update(_policies).where(_policies.c.active.is_(True)).values(active=False))
    conn.execute(
        insert(_policies),
        {
            "version": version,
            "sources": dict(sources),
            "published_at": now,
            "published_by": by,
            "active": True,
        },
    )


def _record(row: Any) -> PolicyRecord:
    return PolicyRecord(
        version=row.version,
        sources=dict(row.sources),
        published_at=from_db(row.published_at),
        published_by=row.published_by,
        active=bool(row.active),
        id=int(row.id),
    )


def active_policy(conn: Connection) -> PolicyRecord | None:
    row = conn.execute(
        select(_policies)
        .where(_policies.c.active.is_(True))
        .order_by(_policies.c.id.desc())
        .limit(1)
    ).first()
    return _record(row) if row is not None else None


def policy_history(conn: Connection, limit: int) -> list[PolicyRecord]:
    rows = conn.execute(select(_policies).order_by(_policies.c.id.desc()).limit(limit))
    return [_record(row) for row in rows]


# --- policy history, diff and rollback -------------------------------------------------------


def policy_versions(conn: Connection, prefix: str) -> list[str]:
    """The distinct published versions starting with ``prefix``, oldest first."""
    first = func.min(_policies.c.id)
    rows = conn.execute(
        select(_policies.c.version, first)
        .where(_policies.c.version.startswith(prefix, autoescape=True))
        .group_by(_policies.c.version)
        .order_by(first)
    )
    return [row.version for row in rows]


def policy_record(conn: Connection, version: str, *, first: bool = False) -> PolicyRecord | None:
    """The newest row that published ``version`` (with ``first``, the oldest)."""
    order = _policies.c.id.asc() if first else _policies.c.id.desc()
    row = conn.execute(
        select(_policies).where(_policies.c.version == version).order_by(order).limit(1)
    ).first()
    return _record(row) if row is not None else None


def previous_policy(conn: Connection) -> PolicyRecord | None:
    """The newest version published before the active one that differs from it."""
    active = active_policy(conn)
    if active is None:
        return None
    row = conn.execute(
        select(_policies)
        .where(_policies.c.id < active.id, _policies.c.version != active.version)
        .order_by(_policies.c.id.desc())
        .limit(1)
    ).first()
    return _record(row) if row is not None else None
