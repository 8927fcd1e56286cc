"""The notes index on SQLite (FTS5, BM25) and PostgreSQL (tsvector, GIN): sync with a
real folder, search with real queries, hostile queries that must not break the engine."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect

from arbiter import migrations
from arbiter.errors import InputError
from arbiter.ledger import Ledger
from arbiter.ledger.notes import terms
from tasks.notes import MAX_WORDS, search_notes, split_passages, sync_notes

FONTS = """# Typefaces for signage

For the museum's wayfinding signs we chose open-source typefaces: Atkinson Hyperlegible
and Source Sans read well from a distance and are free to embed.

## Sizes

Letters on a sign read at 3 m need a cap height of about 25 mm.
"""
PRICING = """Pricing notes

A logo for a small business starts at a day rate of 600 EUR; a full identity takes five
days. Bakeries and cafés often ask for packaging too.
"""
BACKUPS = "Video projects are backed up nightly to the NAS, weekly to tape."


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    ledger = Ledger(database_url)
    ledger.upgrade()
    yield ledger
    ledger.close()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "notes"
    (root / "studio").mkdir(parents=True)
    (root / "fonts.md").write_text(FONTS, encoding="utf-8")
    (root / "studio" / "pricing.txt").write_text(PRICING, encoding="utf-8")
    (root / "backups.md").write_text(BACKUPS, encoding="utf-8")
    return root


def bump(path: Path) -> None:
    """A new modification time, whatever the file system's resolution."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def test_sync_indexes_and_search_finds_by_meaningful_words(ledger: Ledger, folder: Path) -> None:
    stats = sync_notes(ledger, folder)
    assert (stats.added, stats.updated, stats.removed, stats.skipped) == (3, 0, 0, 0)
    hits = search_notes(ledger, "Which open-source fonts suit museum signs?")
    assert hits and hits[0].path == "fonts.md"
    assert "Atkinson" in hits[0].text
    # Stemming: "typeface" finds "typefaces", "pricing" finds "Pricing"/"price".
    assert search_notes(ledger, "typeface")[0].path == "fonts.md"
    assert search_notes(ledger, "how do we price a logo for a bakery")[0].path == (
        "studio/pricing.txt"
    )
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_k_bounds_the_answer(ledger: Ledger, folder: Path) -> None:
    sync_notes(ledger, folder)
    assert len(search_notes(ledger, "signs sizes logo video", k=2)) == 2
    assert search_notes(ledger, "signs", k=0) == []


def test_unchanged_files_are_not_read_again(ledger: Ledger, folder: Path) -> None:
    sync_notes(ledger, folder)
    # Same size and modification time, other bytes: a sync that read the file would see it.
    note = folder / "backups.md"
    before = note.stat()
    note.write_text(BACKUPS.replace("tape", "disc"), encoding="utf-8")
    os.utime(note, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert note.stat().st_size == before.st_size
    stats = sync_notes(ledger, folder)
    assert (stats.added, stats.updated, stats.removed, stats.unchanged) == (0, 0, 0, 3)
    assert not stats.changed
    assert search_notes(ledger, "tape")[0].path == "backups.md"
    assert search_notes(ledger, "disc") == []


def test_changed_touched_and_deleted_files(ledger: Ledger, folder: Path) -> None:
    sync_notes(ledger, folder)
    (folder / "backups.md").write_text("Backups now go to an offsite bucket.", encoding="utf-8")
    bump(folder / "backups.md")
    bump(folder / "fonts.md")  # touched, same content
    (folder / "studio" / "pricing.txt").unlink()
    stats = sync_notes(ledger, folder)
    assert (stats.added, stats.updated, stats.removed, stats.unchanged) == (0, 1, 1, 1)
    assert search_notes(ledger, "offsite bucket")[0].path == "backups.md"
    assert search_notes(ledger, "tape") == []
    assert search_notes(ledger, "bakeries") == []
    assert set(ledger.note_files()) == {"fonts.md", "backups.md"}
    assert not sync_notes(ledger, folder).changed


def test_binary_and_non_utf8_files_are_skipped_with_a_log_line(
    ledger: Ledger, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (folder / "latin1.txt").write_bytes("café crème".encode("latin-1"))
    (folder / "blob.md").write_bytes(b"PK\x03\x04\x00\x00binary")
    (folder / "image.png").write_bytes(b"\x89PNG\r\n")  # not a note at all
    (folder / ".hidden.md").write_text("secret typefaces", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="sovereign.notes"):
        stats = sync_notes(ledger, folder)
    assert stats.skipped == 2 and stats.added == 5
    assert "latin1.txt: not UTF-8" in caplog.text
    assert "blob.md: binary" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sovereign.notes"):
        again = sync_notes(ledger, folder)
    assert again.skipped == 2 and not again.changed
    assert caplog.text == ""  # logged once, not every sync
    assert "image.png" not in ledger.note_files()
    assert all(h.path != ".hidden.md" for h in search_notes(ledger, "secret typefaces"))


def test_missing_folder_is_one_sentence(ledger: Ledger, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="SOVEREIGN_NOTES_DIR"):
        sync_notes(ledger, tmp_path / "nope")


@pytest.mark.parametrize(
    "query",
    [
        '"unbalanced quote',
        "fonts*",
        "NEAR(fonts signs)",
        "-fonts",
        "fonts AND OR NOT",
        "signs: {museum} ^2 ~",
        "🎨🖼️ museum 🎨",
        "博物馆 标识 字体",
        "",
        "   ",
        "''''",
        "a\x00b",
    ],
)
def test_hostile_queries_never_break_the_engine(ledger: Ledger, folder: Path, query: str) -> None:
    sync_notes(ledger, folder)
    hits = search_notes(ledger, query)
    assert isinstance(hits, list)


def test_chinese_notes_are_found_by_their_words(ledger: Ledger, folder: Path) -> None:
    (folder / "zh.md").write_text("博物馆 标识 使用 开源 字体", encoding="utf-8")
    sync_notes(ledger, folder)
    assert [h.path for h in search_notes(ledger, "开源 字体")] == ["zh.md"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=80))
def test_any_text_is_a_query(ledger: Ledger, query: str) -> None:
    # No notes needed: a syntax error would raise before any row is read.
    assert isinstance(ledger.search_notes(query), list)


def test_terms_are_plain_words() -> None:
    assert terms('Which "open-source" fonts* suit NEAR museum -signs?') == [
        "open",
        "source",
        "fonts",
        "suit",
        "museum",
        "signs",
    ]
    assert terms("🎨 ... !!") == []


def test_passages_follow_headings_and_stay_short() -> None:
    long_paragraph = " ".join(f"word{i}" for i in range(MAX_WORDS * 2 + 10))
    text = f"intro line\n\n# First\n\npara one\n\npara two\n\n## Second\n\n{long_paragraph}"
    passages = split_passages(text)
    assert passages[0] == "intro line"
    assert passages[1] == "# First\n\npara one\n\npara two"
    assert all(p.startswith("## Second") for p in passages[2:])
    assert len(passages) >= 4
    assert all(len(p.split()) <= MAX_WORDS + 3 for p in passages)
    assert split_passages("") == []
    assert split_passages("# Only a heading") == ["# Only a heading"]


def test_migration_0014_goes_down_and_up_again(ledger: Ledger, folder: Path) -> None:
    sync_notes(ledger, folder)
    with ledger.engine.begin() as conn:
        command.downgrade(migrations.alembic_config(conn), "0013")
    names = set(inspect(ledger.engine).get_table_names())
    assert not {n for n in names if n.startswith("notes")}
    ledger.upgrade()
    assert ledger.note_files() == {}
    assert sync_notes(ledger, folder).added == 3
    assert search_notes(ledger, "typefaces")[0].path == "fonts.md"


def test_two_syncs_indexing_one_new_file_at_once_leave_one_row(ledger: Ledger) -> None:
    """The second writer waits for the first (SQLite's write lock, PostgreSQL's unique
    index) and then replaces its passages, rather than failing on the path's key."""
    from datetime import datetime

    from arbiter.ledger import notes

    entry = notes.IndexedFile("race.md", 1, 10, "a" * 64, None)
    first_in = threading.Event()
    errors: list[BaseException] = []

    def second() -> None:
        first_in.wait(10)
        try:
            with ledger.transaction() as conn:
                notes.put(conn, entry, ["second passage about kilns"], datetime(2026, 1, 1))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    with ledger.transaction() as conn:
        notes.put(conn, entry, ["first passage about glazes"], datetime(2026, 1, 1))
        first_in.set()
        thread.join(0.5)  # the second is blocked behind this transaction
        assert thread.is_alive()
    thread.join(10)
    assert not errors
    assert list(ledger.note_files()) == ["race.md"]
    assert [h.text for h in ledger.search_notes("kilns glazes", k=5)] == [
        "second passage about kilns"
    ]
