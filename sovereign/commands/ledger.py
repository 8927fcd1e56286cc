"""Ledger commands: ``sovereign db upgrade`` and ``sovereign spend``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, cast

import click

from arbiter.settings import load_settings

if TYPE_CHECKING:
    from arbiter.ledger import GroupBy, SpendReport

# The ledger (SQLAlchemy, Alembic) is imported inside the commands: every other command,
# and `--help`, starts without paying for it.
GROUPS = ("model", "provider", "kind", "day")


def register(group: click.Group) -> None:
    """Add ``db`` and ``spend`` to the command line."""
    group.add_command(db)
    group.add_command(spend)


@click.group()
def db() -> None:
    """The ledger database."""


@db.command()
def upgrade() -> None:
    """Create or migrate the ledger's tables to the newest schema."""
    from arbiter.ledger import Ledger
    from arbiter.ledger.db import describe

    ledger = Ledger.from_settings(load_settings(), upgrade=False)
    try:
        before = ledger.revision()
        after = ledger.upgrade()
    finally:
        ledger.close()
    where = describe(ledger.url)
    if before == after:
        click.echo(f"the ledger at {where} is up to date (revision {after})")
    else:
        click.echo(f"migrated the ledger at {where} from {before or 'empty'} to revision {after}")


@click.command()
@click.option("--days", default=1, show_default=True, type=click.IntRange(min=1), help="Days.")
@click.option(
    "--by",
    "by",
    default="model",
    show_default=True,
    type=click.Choice(GROUPS),
    help="How to group the spend.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def spend(days: int, by: str, as_json: bool) -> None:
    """Spend and tokens of the last N calendar days (today is day 1)."""
    from arbiter.ledger import Ledger

    ledger = Ledger.from_settings(load_settings())
    try:
        report = ledger.spend_report(days=days, by=cast("GroupBy", by))
    finally:
        ledger.close()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(render(report, days))


def render(report: SpendReport, days: int) -> str:
    """The report as plain aligned text."""
    header = (report.by, "calls", "input", "cached", "output", "cost USD")
    lines = [
        (
            row.key,
            str(row.calls),
            f"{row.input_tokens:,}",
            f"{row.cached_tokens:,}",
            f"{row.output_tokens:,}",
            f"{row.cost_usd:.4f}",
        )
        for row in [*report.rows, report.total]
    ]
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]

    def fmt(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    period = "today" if days == 1 else f"the last {days} days"
    title = f"spend {period} (since {report.since:%Y-%m-%d %H:%M %Z}), by {report.by}"
    body = [fmt(header), fmt(tuple("-" * w for w in widths))]
    body += [fmt(cells) for cells in lines[:-1]]
    if report.rows:
        body.append(fmt(tuple("-" * w for w in widths)))
    body.append(fmt(lines[-1]))
    held = f"held in reservations: {report.held_usd:.4f} USD ({report.held_count} open)"
    return "\n".join([title, "", *body, "", held])
