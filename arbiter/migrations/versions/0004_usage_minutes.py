"""Settled tokens per minute, so the rolling hour reads at most 60 rows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create usage_minutes and fill it from the calls of the last two hours."""
    op.create_table(
        "usage_minutes",
        sa.Column("minute", sa.DateTime(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("minute", name=op.f("pk_usage_minutes")),
    )
    # Filled by Ledger.upgrade's rebuild when calls exist (it recomputes every total).


def downgrade() -> None:
    """Drop usage_minutes."""
    op.drop_table("usage_minutes")
