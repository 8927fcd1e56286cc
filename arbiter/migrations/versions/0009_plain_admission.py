"""Plain admissions: drop the fact counter; confidential topics; reservations on calls.

The gate reads its facts under the lock on every admission, so the ``ledger_version``
counter and the triggers that moved it (0006 on PostgreSQL, 0007 on SQLite) go. Topics
gain ``confidential`` (follow-ups of confidential research inherit it) and
``parent_task``; model calls record the reservation they settled.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The counter's triggers, as 0006 and 0007 named them.
WHOLE_TABLES = (
    "held_totals",
    "usage_days",
    "usage_minutes",
    "model_calls",
    "research_topics",
    "system_state",
)
EVENTS = ("insert", "update", "delete")


def upgrade() -> None:
    """Drop the counter and its triggers; add the new columns."""
    if op.get_bind().dialect.name == "postgresql":
        for name in WHOLE_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS ledger_version_bump ON {name}")
        for event in EVENTS:
            op.execute(f"DROP TRIGGER IF EXISTS ledger_version_bump_{event} ON tasks")
        op.execute("DROP FUNCTION IF EXISTS ledger_version_bump()")
    else:
        for name in (*WHOLE_TABLES, "tasks"):
            for event in EVENTS:
                op.execute(f"DROP TRIGGER IF EXISTS ledger_version_{name}_{event}")
    op.drop_table("ledger_version")
    with op.batch_alter_table("research_topics") as batch:
        batch.add_column(
            sa.Column("confidential", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("parent_task", sa.String(64), nullable=True))
    with op.batch_alter_table("model_calls") as batch:
        batch.add_column(sa.Column("reserved_nusd", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Remove the columns and put an (unmoving) counter back."""
    with op.batch_alter_table("model_calls") as batch:
        batch.drop_column("reserved_nusd")
    with op.batch_alter_table("research_topics") as batch:
        batch.drop_column("parent_task")
        batch.drop_column("confidential")
    op.create_table(
        "ledger_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_version")),
    )
    op.execute("INSERT INTO ledger_version (id, version) VALUES (1, 0)")
