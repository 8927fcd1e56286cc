"""Operating it: scoped halts, tasks set aside by a halt, approval notes.

The one-row ``system_state`` becomes ``halts``, one row per scope (all, cloud, local);
a system halted before the upgrade stays halted, in scope ``all``. ``halted_tasks``
holds the queued tasks a worker set aside under a halt until their scope resumes.
Approvals gain ``note``: what the person who decided wrote, kept apart from the policy's
reason.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCOPES = ("all", "cloud", "local")


def upgrade() -> None:
    """Create halts (seeded from system_state) and halted_tasks; add approvals.note."""
    op.create_table(
        "halts",
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("halted", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("since", sa.DateTime(), nullable=True),
        sa.Column("halted_by", sa.String(length=128), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("scope IN ('all', 'cloud', 'local')", name=op.f("ck_halts_scope")),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_halts")),
    )
    # Every scope has its row from the start: a worker's check locks the rows it reads
    # (see arbiter.ledger.halts), which only works for rows that exist.
    halts = sa.table(
        "halts",
        sa.column("scope", sa.String),
        sa.column("halted", sa.Boolean),
        sa.column("updated_at", sa.DateTime),
    )
    # Scope all takes over the old switch, as it was (in SQL: its times stay as stored).
    op.execute(
        "INSERT INTO halts (scope, halted, reason, since, updated_at) "
        "SELECT 'all', halted, "
        "CASE WHEN halted THEN COALESCE(reason, 'halted before the upgrade') END, "
        "CASE WHEN halted THEN updated_at END, updated_at FROM system_state WHERE id = 1"
    )
    found = op.get_bind().execute(sa.text("SELECT scope FROM halts")).scalars().all()
    for scope in SCOPES:
        if scope not in found:
            op.execute(
                halts.insert().values(
                    scope=scope, halted=sa.false(), updated_at=sa.func.current_timestamp()
                )
            )
    op.drop_table("system_state")
    op.create_table(
        "halted_tasks",
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_halted_tasks")),
    )
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    """Back to one all-or-nothing switch (on when scope all was); notes are dropped."""
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("note")
    op.drop_table("halted_tasks")
    op.create_table(
        "system_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("halted", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_system_state")),
    )
    op.execute(
        "INSERT INTO system_state (id, halted, reason, updated_at) "
        "SELECT 1, halted, reason, updated_at FROM halts WHERE scope = 'all'"
    )
    op.drop_table("halts")
