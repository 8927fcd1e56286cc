"""Index research tasks only: the gate counts today's research cycles, nothing else.

``ix_tasks_kind_created`` indexed every task by kind and time, so each admission wrote one
more index page, for a count that only ever asks about research tasks. A partial index of
research tasks by time serves that count (its ``kind = 'research'`` matches the index's
condition) and is left alone by every other admission.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RESEARCH = sa.text("kind = 'research'")


def upgrade() -> None:
    """Replace the kind-and-time index by a partial index of research tasks."""
    op.create_index(
        "ix_tasks_research_created",
        "tasks",
        ["created_at"],
        unique=False,
        sqlite_where=RESEARCH,
        postgresql_where=RESEARCH,
    )
    op.drop_index("ix_tasks_kind_created", table_name="tasks")


def downgrade() -> None:
    """Put the kind-and-time index back."""
    op.create_index("ix_tasks_kind_created", "tasks", ["kind", "created_at"], unique=False)
    op.drop_index("ix_tasks_research_created", table_name="tasks")
