"""The notes index in the ledger: files, their passages, and full-text search over them.

SQLite ranks with FTS5's BM25 (``bm25()``, porter stemming, unicode61 with diacritics
removed); PostgreSQL with ``ts_rank_cd`` over the passages' stored
``to_tsvector('english', text)`` column, which a GIN index serves (migration 0014). A query is first reduced to plain word terms, so no
user text can be read as FTS syntax; passages match any of the terms and rank by how many
and how rare.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from arbiter.ledger.models import NoteFile, NotePassage, table

FILES = table(NoteFile)
PASSAGES = table(NotePassage)

# The full-text index objects that are not models (the model comparison leaves them out).
FTS_OBJECTS = frozenset({"notes_fts", "ix_notes_passages_fts", "search_vector"})
MAX_TERMS = 32
# Words that say nothing about a topic; both engines would match (or drop) them anyway.
STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "could", "do", "does", "for",
    "from", "how", "i", "in", "is", "it", "of", "on", "or", "our", "should", "the", "this",
    "to", "we", "what", "when", "where", "which", "who", "why", "will", "with", "would",
    "you", "your",
})  # fmt: skip
# FTS5's operators, harmless once quoted but never a topic's word.
OPERATORS = frozenset({"and", "or", "not", "near"})
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class IndexedFile:
    """What the index knows of one file."""

    path: str
    mtime_ns: int
    size: int
    sha256: str
    skipped: str | None


@dataclass(frozen=True, slots=True)
class Hit:
    """A passage found for a query; ``score`` is higher for a better match."""

    path: str
    text: str
    score: float


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic's filter: the full-text index objects (and FTS5's shadow tables) are not
    models, so a comparison of models and database leaves them out."""
    return not (name is not None and (name in FTS_OBJECTS or name.startswith("notes_fts_")))


def terms(query: str) -> list[str]:
    """The query's words, lower-cased, without stop words or operators, at most 32.

    Every term is a run of letters, digits or underscores, so quotes, ``*``, ``-``,
    ``NEAR`` or emoji in the query never reach the search engine as syntax.
    """
    seen: dict[str, None] = {}
    for word in _WORD.findall(query.lower()):
        word = word.strip("_")
        if not word or word in STOPWORDS or word in OPERATORS:
            continue
        if len(word) == 1 and word.isascii():
            continue
        seen.setdefault(word, None)
    return list(seen)[:MAX_TERMS]


def files(conn: Connection) -> dict[str, IndexedFile]:
    """Every indexed file by relative path (the cheap read a sync compares with disk)."""
    rows = conn.execute(
        select(FILES.c.path, FILES.c.mtime_ns, FILES.c.size, FILES.c.sha256, FILES.c.skipped)
    )
    return {r.path: IndexedFile(r.path, r.mtime_ns, r.size, r.sha256, r.skipped) for r in rows}


def put(
    conn: Connection,
    entry: IndexedFile,
    passages: Sequence[str],
    now: datetime,
) -> None:
    """Index ``entry`` with ``passages``, replacing whatever the index had for its path.

    The file row is an upsert, so two syncs indexing the same new file at once (beat and
    ``sovereign notes sync``) end with one row and the later one's passages, not a
    unique-key error.
    """
    values = {
        "path": entry.path,
        "mtime_ns": entry.mtime_ns,
        "size": entry.size,
        "sha256": entry.sha256,
        "skipped": entry.skipped,
        "indexed_at": now,
    }
    upsert = pg_insert(FILES) if conn.dialect.name == "postgresql" else sqlite_insert(FILES)
    file_id = conn.execute(
        upsert.values(**values)
        .on_conflict_do_update(index_elements=[FILES.c.path], set_=values)
        .returning(FILES.c.id)
    ).scalar_one()
    # Passages by statement: SQLite's FTS5 triggers must see each delete.
    conn.execute(delete(PASSAGES).where(PASSAGES.c.file_id == file_id))
    if passages:
        conn.execute(
            insert(PASSAGES),
            [{"file_id": file_id, "ordinal": i, "text": p} for i, p in enumerate(passages)],
        )


def touch(conn: Connection, path: str, mtime_ns: int, size: int) -> None:
    """Record a new stat for a file whose content did not change."""
    conn.execute(update(FILES).where(FILES.c.path == path).values(mtime_ns=mtime_ns, size=size))


def drop(conn: Connection, paths: Iterable[str]) -> None:
    """Forget files (and their passages)."""
    paths = list(paths)
    if not paths:
        return
    ids = select(FILES.c.id).where(FILES.c.path.in_(paths)).scalar_subquery()
    # Passages first, by statement: SQLite's FTS5 triggers must see each delete.
    conn.execute(delete(PASSAGES).where(PASSAGES.c.file_id.in_(ids)))
    conn.execute(delete(FILES).where(FILES.c.path.in_(paths)))


def search(conn: Connection, words: Sequence[str], k: int) -> list[Hit]:
    """The ``k`` best passages for any of ``words`` (from :func:`terms`)."""
    if not words or k < 1:
        return []
    if conn.dialect.name == "sqlite":
        return _search_sqlite(conn, words, k)
    return _search_postgres(conn, words, k)


def _search_sqlite(conn: Connection, words: Sequence[str], k: int) -> list[Hit]:
    # Each term quoted (FTS5 strings double their quotes), joined by OR.
    match = " OR ".join('"' + w.replace('"', '""') + '"' for w in words)
    rows = conn.execute(
        text(
            "SELECT f.path, p.text, bm25(notes_fts) AS rank "
            "FROM notes_fts JOIN notes_passages p ON p.id = notes_fts.rowid "
            "JOIN notes_files f ON f.id = p.file_id "
            "WHERE notes_fts MATCH :match ORDER BY rank, p.id LIMIT :k"
        ),
        {"match": match, "k": k},
    )
    # bm25() is lower for a better match.
    return [Hit(r.path, r.text, -float(r.rank)) for r in rows]


def _search_postgres(conn: Connection, words: Sequence[str], k: int) -> list[Hit]:
    # websearch_to_tsquery never raises; "a or b" is its spelling of a disjunction. The
    # passages' stored tsvector (migration 0014) carries the GIN index.
    rows = conn.execute(
        text(
            "SELECT f.path, p.text, ts_rank_cd(p.search_vector, q.query) AS rank "
            "FROM (SELECT websearch_to_tsquery('english', :query) AS query) AS q "
            "JOIN notes_passages p ON p.search_vector @@ q.query "
            "JOIN notes_files f ON f.id = p.file_id "
            "ORDER BY rank DESC, p.id LIMIT :k"
        ),
        {"query": " or ".join(words), "k": k},
    )
    return [Hit(r.path, r.text, float(r.rank)) for r in rows]
