"""The alerts table: a message is claimed by its key before it is posted, so the same news
(a cap reached today, a task poisoned) goes to the webhook once, from any process."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from arbiter.ledger.models import SentAlert, table
from arbiter.ledger.windows import from_db

_alerts = table(SentAlert)
KEY_MAX = 255  # the key column's length


def stored_key(key: str) -> str:
    """``key`` as the table keeps it: as is when it fits, else its start and a digest of the
    whole (a halt's key carries its reason, which may be long and in any script)."""
    if len(key) <= KEY_MAX:
        return key
    return f"{key[: KEY_MAX - 41]}#{hashlib.sha256(key.encode()).hexdigest()[:40]}"


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One message for the webhook and what became of it."""

    key: str
    kind: str
    text: str
    status: str  # "sending", "sent" or "failed"
    attempts: int
    error: str | None
    created_at: datetime
    sent_at: datetime | None


def claim(conn: Connection, key: str, kind: str, text: str, now: datetime) -> bool:
    """Record the message as being sent; False when its key was claimed before."""
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(_alerts)
    statement = insert.values(
        key=stored_key(key), kind=kind, text=text, status="sending", attempts=0, created_at=now
    ).on_conflict_do_nothing(index_elements=[_alerts.c.key])
    # RETURNING, not rowcount: psycopg reports no rowcount for a skipped conflict.
    return conn.execute(statement.returning(_alerts.c.id)).first() is not None


def record(
    conn: Connection,
    key: str,
    kind: str,
    text: str,
    *,
    sent: bool,
    attempts: int,
    error: str | None,
    now: datetime,
) -> None:
    """Record a message already posted, in one write (one no other process can send)."""
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(_alerts)
    conn.execute(
        insert.values(
            key=stored_key(key),
            kind=kind,
            text=text,
            status="sent" if sent else "failed",
            attempts=attempts,
            error=error,
            created_at=now,
            sent_at=now if sent else None,
        ).on_conflict_do_nothing(index_elements=[_alerts.c.key])
    )


def finish(
    conn: Connection, key: str, *, sent: bool, attempts: int, error: str | None, now: datetime
) -> None:
    """Record how the posting of ``key`` ended."""
    conn.execute(
        update(_alerts)
        .where(_alerts.c.key == stored_key(key))
        .values(
            status="sent" if sent else "failed",
            attempts=attempts,
            error=error,
            sent_at=now if sent else None,
        )
    )


def _record(row: Any) -> AlertRecord:
    return AlertRecord(
        key=row.key,
        kind=row.kind,
        text=row.text,
        status=row.status,
        attempts=int(row.attempts),
        error=row.error,
        created_at=from_db(row.created_at),
        sent_at=from_db(row.sent_at) if row.sent_at is not None else None,
    )


def recent(conn: Connection, limit: int) -> list[AlertRecord]:
    """The newest messages first."""
    rows = conn.execute(select(_alerts).order_by(_alerts.c.id.desc()).limit(limit))
    return [_record(row) for row in rows]
