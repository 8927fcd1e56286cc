"""Running totals of held reservations, kept by triggers, so a budget read is O(1).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HELD = "status = 'held'"

# One statement per change of a row; {row} is NEW or OLD, {sign} + or -.
APPLY = (
    "UPDATE held_totals SET count = count {sign} 1, nusd = nusd {sign} {row}.amount_nusd, "
    "tokens = tokens {sign} {row}.tokens, "
    "cloud = cloud {sign} (CASE WHEN {row}.tier = 'cloud' THEN 1 ELSE 0 END) WHERE id = 1"
)

SQLITE = [
    f"""CREATE TRIGGER held_totals_insert AFTER INSERT ON reservations
        WHEN NEW.{HELD} BEGIN {APPLY.format(sign="+", row="NEW")}; END""",
    f"""CREATE TRIGGER held_totals_delete AFTER DELETE ON reservations
        WHEN OLD.{HELD} BEGIN {APPLY.format(sign="-", row="OLD")}; END""",
    f"""CREATE TRIGGER held_totals_update AFTER UPDATE ON reservations
        BEGIN
            {APPLY.format(sign="-", row="OLD")} AND OLD.{HELD};
            {APPLY.format(sign="+", row="NEW")} AND NEW.{HELD};
        END""",
]

POSTGRESQL = [
    f"""CREATE FUNCTION held_totals_apply() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.{HELD} THEN
            {APPLY.format(sign="-", row="OLD")};
        END IF;
        IF TG_OP IN ('UPDATE', 'INSERT') AND NEW.{HELD} THEN
            {APPLY.format(sign="+", row="NEW")};
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER held_totals_apply AFTER INSERT OR UPDATE OR DELETE ON reservations
        FOR EACH ROW EXECUTE FUNCTION held_totals_apply()""",
]


def upgrade() -> None:
    """Create held_totals, fill it from the held reservations, and install the triggers."""
    op.create_table(
        "held_totals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("nusd", sa.BigInteger(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("cloud", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_held_totals")),
    )
    op.execute(
        "INSERT INTO held_totals (id, count, nusd, tokens, cloud) "
        "SELECT 1, COUNT(*), COALESCE(SUM(amount_nusd), 0), COALESCE(SUM(tokens), 0), "
        "COALESCE(SUM(CASE WHEN tier = 'cloud' THEN 1 ELSE 0 END), 0) "
        f"FROM reservations WHERE {HELD}"
    )
    dialect = op.get_bind().dialect.name
    for statement in POSTGRESQL if dialect == "postgresql" else SQLITE:
        op.execute(statement)


def downgrade() -> None:
    """Drop the triggers and held_totals."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS held_totals_apply ON reservations")
        op.execute("DROP FUNCTION IF EXISTS held_totals_apply()")
    else:
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS held_totals_{name}")
    op.drop_table("held_totals")
