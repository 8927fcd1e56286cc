"""Keep each call's result with the call, so a redelivered attempt answers from it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add model_calls.result."""
    with op.batch_alter_table("model_calls") as batch:
        batch.add_column(sa.Column("result", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop model_calls.result."""
    with op.batch_alter_table("model_calls") as batch:
        batch.drop_column("result")
