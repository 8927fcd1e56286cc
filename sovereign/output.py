"""How commands print: rich tables and colours on a terminal, plain text otherwise.

Every human-facing command prints through here, so the two shapes stay in one place:
on a terminal, rich tables, colours and progress bars; in a pipe or a file, plain
aligned columns with no escape codes. ``--json`` output never comes through here; it is
``emit_json``, the same on a terminal and off.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import click

T = TypeVar("T")

# Colours by meaning, so a verdict or a health looks the same in every command.
COLOURS = {
    "proceed": "green",
    "ok": "green",
    "succeeded": "green",
    "done": "green",
    "throttle": "yellow",
    "approval": "yellow",
    "parked": "yellow",
    "waiting": "yellow",
    "queued": "cyan",
    "running": "cyan",
    "deny": "red",
    "halt": "red",
    "failed": "red",
    "poisoned": "red",
    "down": "red",
    "denied": "red",
}


def interactive() -> bool:
    """Whether standard output is a terminal (colours, tables and progress bars)."""
    return sys.stdout.isatty()


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def cell(value: Any) -> str:
    """A value as a table cell: nothing for None, money with 4 decimals."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    colour_column: int | None = None,
) -> None:
    """Print rows under a header: a rich table on a terminal, aligned text otherwise.

    ``colour_column`` names the column whose value (a verdict or a status) picks the
    row's colour on a terminal.
    """
    cells = [[cell(v) for v in row] for row in rows]
    if interactive():
        from rich.table import Table

        grid = Table(title=title, title_justify="left", header_style="bold")
        for name in columns:
            grid.add_column(name, overflow="fold")
        for row in cells:
            colour = COLOURS.get(row[colour_column]) if colour_column is not None else None
            grid.add_row(*row, style=colour)
        _console().print(grid)
        return
    if title:
        click.echo(title)
    widths = [len(c) for c in columns]
    for row in cells:
        widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]
    for row in [list(columns), *cells]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def fields(pairs: Iterable[tuple[str, Any]], *, title: str | None = None) -> None:
    """Print name/value lines (one record), aligned; coloured names on a terminal."""
    items = [(name, cell(value)) for name, value in pairs]
    width = max((len(name) for name, _ in items), default=0)
    if interactive():
        console = _console()
        if title:
            console.print(f"[bold]{_escape(title)}[/bold]")
        for name, value in items:
            colour = COLOURS.get(value)
            shown = f"[{colour}]{_escape(value)}[/{colour}]" if colour else _escape(value)
            console.print(f"[dim]{name.ljust(width)}[/dim]  {shown}")
        return
    if title:
        click.echo(title)
    for name, value in items:
        click.echo(f"{name.ljust(width)}  {value}".rstrip())


def say(text: str, *, colour: str | None = None) -> None:
    """One line, in a colour on a terminal."""
    if colour and interactive():
        _console().print(f"[{colour}]{_escape(text)}[/{colour}]")
    else:
        click.echo(text)


def progress(items: Sequence[T], description: str) -> Iterator[T]:
    """Iterate, with a progress bar on a terminal and nothing extra otherwise."""
    if not interactive():
        yield from items
        return
    from rich.progress import track

    yield from track(items, description=description, total=len(items))


@contextlib.contextmanager
def activity(text: str) -> Iterator[Callable[[str], None]]:
    """A spinner with a line of text on a terminal; yields the function that changes the
    text. Off a terminal it shows nothing."""
    if not interactive():
        yield lambda _text: None
        return
    with _console().status(_escape(text)) as spinner:
        yield lambda new: spinner.update(_escape(new))


def emit_json(data: Any) -> None:
    """Machine-readable output: the same bytes on a terminal and in a pipe."""
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
