"""The studio's notes: the full-text index of its documents.

Two tables (files and their passages) and a full-text index over the passages: on
SQLite an external-content FTS5 table kept in step by triggers, on PostgreSQL a GIN index
on the passages' stored tsvector column. Neither index is a SQLAlchemy model; the migrations' model
comparison leaves them out (``arbiter.ledger.notes.include_object``).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Kept in step with arbiter.ledger.notes (a migration must not import code that changes).
SQLITE_INDEX = [
    """CREATE VIRTUAL TABLE notes_fts USING fts5(
        text, content='notes_passages', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER notes_passages_ai AFTER INSERT ON notes_passages BEGIN
        INSERT INTO notes_fts(rowid, text) VALUES (new.id, new.text);
    END""",
    """CREATE TRIGGER notes_passages_ad AFTER DELETE ON notes_passages BEGIN
        INSERT INTO notes_fts(notes_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END""",
    """CREATE TRIGGER notes_passages_au AFTER UPDATE ON notes_passages BEGIN
        INSERT INTO notes_fts(notes_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO notes_fts(rowid, text) VALUES (new.id, new.text);
    END""",
]
# The tsvector is stored (a generated column) so ranking reads it instead of parsing
# every matching passage again.
POSTGRES_INDEX = [
    "ALTER TABLE notes_passages ADD COLUMN search_vector tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english', text)) STORED",
    "CREATE INDEX ix_notes_passages_fts ON notes_passages USING gin (search_vector)",
]


def upgrade() -> None:
    """Create the notes tables and their full-text index."""
    op.create_table(
        "notes_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("skipped", sa.String(255), nullable=True),
        sa.Column("indexed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notes_files")),
        sa.UniqueConstraint("path", name="uq_notes_files_path"),
    )
    op.create_table(
        "notes_passages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["notes_files.id"],
            name=op.f("fk_notes_passages_file_id_notes_files"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notes_passages")),
    )
    op.create_index("ix_notes_passages_file_id", "notes_passages", ["file_id"])
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_INDEX:
            op.execute(statement)
    else:
        for statement in POSTGRES_INDEX:
            op.execute(statement)


def downgrade() -> None:
    """Drop them."""
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("notes_passages_au", "notes_passages_ad", "notes_passages_ai"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS notes_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_notes_passages_fts")
        op.execute("ALTER TABLE notes_passages DROP COLUMN IF EXISTS search_vector")
    op.drop_index("ix_notes_passages_file_id", table_name="notes_passages")
    op.drop_table("notes_passages")
    op.drop_table("notes_files")
