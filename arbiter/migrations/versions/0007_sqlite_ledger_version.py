"""SQLite moves the fact counter too, so its gate can keep the facts it last computed.

Migration 0006 installed the counter's triggers on PostgreSQL only. With these, an SQLite
admission reads the counter under the lock (one point read) and reuses the facts its
previous admission left behind when nothing else has written since, instead of reading
the whole budget snapshot again (see ``arbiter/gate.py``). The set of tables and
conditions is 0006's; SQLite triggers fire once per row.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The same tables and research-task conditions as 0006 (kept here: migrations are history).
WHOLE_TABLES = (
    "held_totals",
    "usage_days",
    "usage_minutes",
    "model_calls",
    "research_topics",
    "system_state",
)
TASK_CONDITIONS = {
    "INSERT": "NEW.kind = 'research'",
    "UPDATE": "NEW.kind = 'research' OR OLD.kind = 'research'",
    "DELETE": "OLD.kind = 'research'",
}
EVENTS = ("INSERT", "UPDATE", "DELETE")
BUMP = "UPDATE ledger_version SET version = version + 1 WHERE id = 1"


def _names() -> list[tuple[str, str, str, str | None]]:
    """(trigger name, event, table, condition) for every trigger."""
    names: list[tuple[str, str, str, str | None]] = [
        (f"ledger_version_{table}_{event.lower()}", event, table, None)
        for table in WHOLE_TABLES
        for event in EVENTS
    ]
    names += [
        (f"ledger_version_tasks_{event.lower()}", event, "tasks", condition)
        for event, condition in TASK_CONDITIONS.items()
    ]
    return names


def upgrade() -> None:
    """Install the counter's triggers on SQLite (PostgreSQL has had them since 0006)."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, event, table, condition in _names():
        when = f" WHEN {condition}" if condition else ""
        op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table}{when} BEGIN {BUMP}; END")


def downgrade() -> None:
    """Drop them."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, _event, _table, _condition in _names():
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
