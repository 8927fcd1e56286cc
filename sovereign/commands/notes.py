"""The studio's notes: index the configured folder now, and search it as research does."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from arbiter.errors import InputError
from arbiter.settings import load_settings
from sovereign import output

NOT_CONFIGURED = (
    "no notes folder is configured; set SOVEREIGN_NOTES_DIR to the folder of the studio's "
    "Markdown and text documents"
)


def register(group: click.Group) -> None:
    group.add_command(notes)


def _setup() -> tuple[Any, Path]:
    from arbiter.ledger import Ledger

    settings = load_settings()
    if settings.notes_dir is None:
        raise InputError(NOT_CONFIGURED)
    return Ledger.from_settings(settings), settings.notes_dir


def _excerpt(text: str, width: int = 160) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


@click.group()
def notes() -> None:
    """The studio's own documents that research cites (SOVEREIGN_NOTES_DIR)."""


@notes.command("sync")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def sync(as_json: bool) -> None:
    """Index new and changed notes now and forget deleted ones."""
    from tasks.notes import sync_notes

    ledger, folder = _setup()
    stats = sync_notes(ledger, folder)
    if as_json:
        output.emit_json({"folder": str(folder), **dataclasses.asdict(stats)})
        return
    output.fields(
        [
            ("added", stats.added),
            ("updated", stats.updated),
            ("removed", stats.removed),
            ("unchanged", stats.unchanged),
            ("skipped", stats.skipped),
            ("passages indexed", stats.passages),
        ],
        title=f"notes in {folder}",
    )


@notes.command("search")
@click.argument("query")
@click.option("-k", "k", type=click.IntRange(1, 50), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def search(query: str, k: int, as_json: bool) -> None:
    """The passages research would put in a prompt about QUERY, best first."""
    from tasks.notes import search_notes

    ledger, _folder = _setup()
    hits = search_notes(ledger, query, k)
    if as_json:
        output.emit_json([dataclasses.asdict(h) for h in hits])
        return
    if not hits:
        output.say("no passage matches; `sovereign notes sync` indexes new notes")
        return
    output.table(
        ["score", "file", "passage"],
        [(f"{h.score:.3f}", h.path, _excerpt(h.text)) for h in hits],
        title=f"notes for {query!r}",
    )
