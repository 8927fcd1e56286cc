"""The studio's notes: a folder of Markdown and text, split into passages and kept indexed.

``sync_notes`` brings the index in step with the folder: new and changed files are read
and indexed, deleted ones dropped, and a file whose size and modification time are as
indexed is not even opened, so a sync with nothing changed is one walk of ``stat`` calls
and one read of the index. A file that is not UTF-8 text is recorded as skipped (logged
once, when it changes) rather than indexed.

``search_notes`` returns the passages that best match a topic, for the research prompt.
The notes are the studio's own material: a task carrying excerpts is confidential unless
``SOVEREIGN_NOTES_SHAREABLE`` says otherwise (the research loop applies that).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from arbiter.errors import InputError
from arbiter.ledger import Ledger
from arbiter.ledger.notes import IndexedFile
from arbiter.settings import Settings

log = logging.getLogger("sovereign.notes")

SUFFIXES = frozenset({".md", ".markdown", ".mdown", ".txt", ".text", ".rst"})
MAX_FILE_BYTES = 5 * 1024 * 1024
# A passage gathers paragraphs up to about TARGET words and never passes MAX (a longer
# paragraph is cut into TARGET-word pieces): long enough to carry an idea, short enough
# that three of them fit a small model's prompt.
TARGET_WORDS = 200
MAX_WORDS = 300
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+\S")


@dataclass(frozen=True, slots=True)
class Passage:
    """A passage of a note: its file relative to the notes folder, its text, its score
    (higher is better; comparable within one search only)."""

    path: str
    text: str
    score: float


@dataclass(frozen=True, slots=True)
class SyncStats:
    """What one sync did."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: int = 0
    passages: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def split_passages(text: str) -> list[str]:
    """``text`` cut into passages at headings and paragraphs, each headed by its heading."""
    passages: list[str] = []
    heading = ""
    body: list[str] = []
    words = 0

    def flush() -> None:
        nonlocal body, words
        if body:
            passages.append("\n\n".join([heading, *body]) if heading else "\n\n".join(body))
        body, words = [], 0

    for block in _blocks(text):
        if _HEADING.match(block):
            flush()
            heading = block.strip()
            continue
        for piece in _pieces(block):
            n = len(piece.split())
            if body and (words >= TARGET_WORDS or words + n > MAX_WORDS):
                flush()
            body.append(piece)
            words += n
    flush()
    if not passages and heading:
        passages.append(heading)
    return passages


def _blocks(text: str) -> list[str]:
    """Paragraphs (separated by blank lines), with each heading line a block of its own."""
    blocks: list[str] = []
    current: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if _HEADING.match(line) or not line.strip():
            if current:
                blocks.append("\n".join(current).strip())
                current = []
            if line.strip():
                blocks.append(line.strip())
            continue
        current.append(line.rstrip())
    if current:
        blocks.append("\n".join(current).strip())
    return [b for b in blocks if b]


def _pieces(paragraph: str) -> list[str]:
    words = paragraph.split()
    if len(words) <= MAX_WORDS:
        return [paragraph]
    return [" ".join(words[i : i + TARGET_WORDS]) for i in range(0, len(words), TARGET_WORDS)]


def _walk(folder: Path) -> dict[str, os.stat_result]:
    """Every note file under ``folder`` (hidden files and folders left out) with its stat."""
    found: dict[str, os.stat_result] = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            if name.startswith(".") or Path(name).suffix.lower() not in SUFFIXES:
                continue
            full = Path(root) / name
            try:
                stat = full.stat()
            except OSError:
                continue  # gone since the listing, or a dangling link
            if full.is_file():
                found[full.relative_to(folder).as_posix()] = stat
    return found


def _read(full: Path, size: int) -> tuple[str | None, str, str | None]:
    """(text, sha256, why it was skipped) of one file."""
    if size > MAX_FILE_BYTES:
        return None, "", f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MB"
    data = full.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if b"\x00" in data:
        return None, digest, "binary (it holds NUL bytes)"
    try:
        return data.decode("utf-8-sig"), digest, None
    except UnicodeDecodeError as exc:
        return None, digest, f"not UTF-8 (byte {exc.start})"


def sync_notes(ledger: Ledger, folder: Path) -> SyncStats:
    """Bring the notes index in step with ``folder``."""
    if not folder.is_dir():
        raise InputError(
            f"the notes folder {folder} does not exist; create it or fix SOVEREIGN_NOTES_DIR"
        )
    on_disk = _walk(folder)
    indexed = ledger.note_files()
    added = updated = unchanged = skipped = passages = 0
    for path, stat in sorted(on_disk.items()):
        known = indexed.get(path)
        if known is not None and (known.mtime_ns, known.size) == (stat.st_mtime_ns, stat.st_size):
            unchanged += 1
            skipped += known.skipped is not None
            continue
        try:
            text, digest, why = _read(folder / path, stat.st_size)
        except OSError as exc:
            log.warning("notes: cannot read %s (%s); it stays as it was", path, exc.strerror)
            continue
        if known is not None and digest and known.sha256 == digest and known.skipped == why:
            ledger.touch_note(path, stat.st_mtime_ns, stat.st_size)
            unchanged += 1
            skipped += why is not None
            continue
        if why is not None:
            log.warning("notes: skipped %s: %s", path, why)
            skipped += 1
        pieces = split_passages(text) if text is not None else []
        entry = IndexedFile(path, stat.st_mtime_ns, stat.st_size, digest, why)
        ledger.put_note(entry, pieces)
        passages += len(pieces)
        if known is None:
            added += 1
        else:
            updated += 1
    gone = sorted(set(indexed) - set(on_disk))
    if gone:
        ledger.drop_notes(gone)
    stats = SyncStats(added, updated, len(gone), unchanged, skipped, passages)
    if stats.changed:
        log.info(
            "notes: %d added, %d updated, %d removed (%d passages indexed)",
            added,
            updated,
            len(gone),
            passages,
        )
    return stats


def sync_configured(ledger: Ledger, settings: Settings) -> SyncStats | None:
    """Sync the configured notes folder; ``None`` when no folder is configured."""
    if settings.notes_dir is None:
        return None
    return sync_notes(ledger, settings.notes_dir)


def search_notes(ledger: Ledger, query: str, k: int = 3) -> list[Passage]:
    """The ``k`` passages that best match ``query``, best first (none for a query that
    has no words, such as punctuation or emoji alone)."""
    return [Passage(h.path, h.text, h.score) for h in ledger.search_notes(query, k)]
