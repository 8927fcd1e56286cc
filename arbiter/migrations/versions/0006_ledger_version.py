"""A counter that moves whenever a fact the gate reads changes (PostgreSQL).

The gate may decide from the facts it read at the end of its previous admission and write
in one round trip, on condition that this counter has not moved since (see
``arbiter/gate.py``). Triggers bump it on every change to a table the budget and research
facts come from, whoever writes: settling, releasing, expiring, halting, research topics,
research tasks, and admissions themselves.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUMP = "ledger_version_bump"
# Tables whose every change moves a fact: one bump per statement.
WHOLE_TABLES = (
    "held_totals",
    "usage_days",
    "usage_minutes",
    "model_calls",
    "research_topics",
    "system_state",
)
# Tasks move a fact (research cycles today) only when they are research tasks.
TASK_TRIGGERS = {
    "insert": ("INSERT", "NEW.kind = 'research'"),
    "update": ("UPDATE", "NEW.kind = 'research' OR OLD.kind = 'research'"),
    "delete": ("DELETE", "OLD.kind = 'research'"),
}


def upgrade() -> None:
    """Create the counter; on PostgreSQL, install the function and triggers that move it."""
    op.create_table(
        "ledger_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_version")),
    )
    op.execute("INSERT INTO ledger_version (id, version) VALUES (1, 0)")
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite admissions always read under the lock; nothing reads the counter
    op.execute(
        f"""CREATE FUNCTION {BUMP}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            -- One lock order for the two hot rows, whatever a writer touched first: the
            -- held totals, then the counter. (An admission moves the totals before the
            -- counter; a settle records its call, which moves the counter, before it
            -- closes the hold, which moves the totals. Without this they deadlock.)
            PERFORM 1 FROM held_totals WHERE id = 1 FOR UPDATE;
            UPDATE ledger_version SET version = version + 1 WHERE id = 1;
            RETURN NULL;
        END $$"""
    )
    for name in WHOLE_TABLES:
        op.execute(
            f"CREATE TRIGGER {BUMP} AFTER INSERT OR UPDATE OR DELETE ON {name} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {BUMP}()"
        )
    for suffix, (event, condition) in TASK_TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {BUMP}_{suffix} AFTER {event} ON tasks "
            f"FOR EACH ROW WHEN ({condition}) EXECUTE FUNCTION {BUMP}()"
        )


def downgrade() -> None:
    """Drop the triggers, the function and the counter."""
    if op.get_bind().dialect.name == "postgresql":
        for name in WHOLE_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {BUMP} ON {name}")
        for suffix in TASK_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {BUMP}_{suffix} ON tasks")
        op.execute(f"DROP FUNCTION IF EXISTS {BUMP}()")
    op.drop_table("ledger_version")
