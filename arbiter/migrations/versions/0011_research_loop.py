"""The research loop: topic priority and tags, structured briefs, escalations, notes index.

Topics take the statuses people read (``pending`` becomes ``queued``, ``claimed``
becomes ``running``; ``denied``, ``failed`` and ``waiting`` are new), a priority, tags,
the time a waiting topic may be submitted again and why, their latest task, and the
local confidence of a topic queued again as an escalation. Briefs keep the structured
answer (key points, follow-ups, sources), the confidence with its signals, the model
that wrote them, and the local brief an escalated one continues.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "status IN ('pending', 'claimed', 'done')"
NEW = "status IN ('queued', 'running', 'done', 'denied', 'failed', 'waiting')"
# Old name → new name, and back (the new statuses without an old one go back to pending).
RENAMES = (("pending", "queued"), ("claimed", "running"))
BACK = (("queued", "pending"), ("running", "claimed"), ("waiting", "pending"))


def _id_type() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _statuses(allowed: str, renames: Sequence[tuple[str, str]]) -> None:
    with op.batch_alter_table("research_topics") as batch:
        batch.drop_constraint(op.f("ck_research_topics_status"), type_="check")
    for old, new in renames:
        op.execute(f"UPDATE research_topics SET status = '{new}' WHERE status = '{old}'")
    with op.batch_alter_table("research_topics") as batch:
        batch.create_check_constraint("status", allowed)


def upgrade() -> None:
    """Add the topic and brief columns and rename the topic statuses."""
    with op.batch_alter_table("research_topics") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("wait_until", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("task_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("local_confidence", sa.Float(), nullable=True))
        batch.add_column(sa.Column("escalate_from", _id_type(), nullable=True))
    _statuses(NEW, RENAMES)
    with op.batch_alter_table("research_briefs") as batch:
        batch.add_column(sa.Column("key_points", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("follow_ups", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("sources", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("confidence", sa.Float(), nullable=True))
        batch.add_column(sa.Column("signals", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("provider", sa.String(64), nullable=True))
        batch.add_column(sa.Column("model", sa.String(128), nullable=True))
        batch.add_column(sa.Column("tier", sa.String(16), nullable=True))
        batch.add_column(sa.Column("escalated_from", _id_type(), nullable=True))
    op.create_index("ix_research_briefs_task", "research_briefs", ["task_id"])
    op.create_index("ix_research_briefs_created", "research_briefs", ["created_at"])


def downgrade() -> None:
    """Drop them; denied and failed topics count as done."""
    op.drop_index("ix_research_briefs_created", table_name="research_briefs")
    op.drop_index("ix_research_briefs_task", table_name="research_briefs")
    with op.batch_alter_table("research_briefs") as batch:
        for name in (
            "escalated_from", "tier", "model", "provider", "signals",
            "confidence", "sources", "follow_ups", "key_points",
        ):  # fmt: skip
            batch.drop_column(name)
    _statuses(OLD, (*BACK, ("denied", "done"), ("failed", "done")))
    with op.batch_alter_table("research_topics") as batch:
        for name in (
            "escalate_from", "local_confidence", "task_id", "reason",
            "wait_until", "tags", "priority",
        ):  # fmt: skip
            batch.drop_column(name)
