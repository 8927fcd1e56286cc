"""Worker leases and poisoned tasks.

A running task carries its worker's lease (renewed while the worker lives) and counts the
deliveries that died mid-run; a task that keeps killing its worker ends ``poisoned``.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "status IN ('queued', 'running', 'succeeded', 'failed', 'blocked', 'parked')"
NEW = "status IN ('queued', 'running', 'succeeded', 'failed', 'blocked', 'parked', 'poisoned')"
RUNNING = sa.text("status = 'running'")


def _statuses(allowed: str) -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_constraint(op.f("ck_tasks_status"), type_="check")
        batch.create_check_constraint("status", allowed)


def upgrade() -> None:
    """Add the lease columns, the poisoned status and the sweep's index."""
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("lease_until", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("worker", sa.String(255), nullable=True))
        batch.add_column(sa.Column("died", sa.Integer(), nullable=False, server_default="0"))
    _statuses(NEW)
    op.create_index(
        "ix_tasks_running_lease",
        "tasks",
        ["lease_until"],
        sqlite_where=RUNNING,
        postgresql_where=RUNNING,
    )


def downgrade() -> None:
    """Drop them (poisoned tasks become failed ones)."""
    op.drop_index("ix_tasks_running_lease", table_name="tasks")
    op.execute("UPDATE tasks SET status = 'failed' WHERE status = 'poisoned'")
    _statuses(OLD)
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("died")
        batch.drop_column("worker")
        batch.drop_column("lease_until")
