"""Ledger commands: ``sovereign db upgrade`` and ``sovereign spend``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

from arbiter.errors import InputError, SovereignError
from arbiter.settings import Settings, load_settings
from sovereign import output

if TYPE_CHECKING:
    from arbiter.ledger import GroupBy, Ledger, SpendReport

# The ledger (SQLAlchemy, Alembic) is imported inside the commands: every other command,
# and `--help`, starts without paying for it.
GROUPS = ("model", "provider", "kind", "day")
CHART_DAYS = 14


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
@click.option(
    "--days",
    default=None,
    type=click.IntRange(min=1),
    help="Days, today included [default: 1; 14 with --chart].",
)
@click.option(
    "--by",
    "by",
    default="model",
    show_default=True,
    type=click.Choice(GROUPS),
    help="How to group the spend.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--chart",
    "chart",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also draw spend per day by provider, with the policy's daily cap, as a PNG here.",
)
def spend(days: int | None, by: str, as_json: bool, chart: Path | None) -> None:
    """Spend and tokens of the last N calendar days (today is day 1)."""
    from arbiter.ledger import Ledger

    days = days or (CHART_DAYS if chart else 1)
    settings = load_settings()
    ledger = Ledger.from_settings(settings)
    try:
        report = ledger.spend_report(days=days, by=cast("GroupBy", by))
        if chart is not None:
            draw_chart(settings, ledger, days, chart)
    finally:
        ledger.close()
    if as_json:
        output.emit_json(report.to_dict())
    else:
        render(report, days)
    if chart is not None and not as_json:
        output.say(f"wrote the spend chart of the last {days} days to {chart}")


def draw_chart(settings: Settings, ledger: Ledger, days: int, path: Path) -> None:
    """Write the spend chart, with the daily cap of the active policy."""
    from arbiter.lang.caps import policy_caps
    from arbiter.policy_store import PolicyStore
    from sovereign.chart import chart_data, draw

    if not path.parent.is_dir():
        raise InputError(f"the folder {path.parent} does not exist; create it or pick another")
    try:
        caps = policy_caps(PolicyStore(settings.policy_path, ledger).current().sources)
    except SovereignError:
        caps = []  # no policy loads: the chart has no cap line
    try:
        draw(chart_data(ledger, days, caps), path, title=f"spend per day, last {days} days")
    except OSError as exc:
        raise InputError(
            f"cannot write the chart to {path} ({exc.strerror}); pick another path"
        ) from None


def render(report: SpendReport, days: int) -> None:
    """Print the report: a table on a terminal, aligned columns in a pipe."""
    period = "today" if days == 1 else f"the last {days} days"
    title = f"spend {period} (since {report.since:%Y-%m-%d %H:%M %Z}), by {report.by}"
    rows = [
        (row.key, row.calls, row.input_tokens, row.cached_tokens, row.output_tokens, row.cost_usd)
        for row in [*report.rows, report.total]
    ]
    output.table((report.by, "calls", "input", "cached", "output", "cost USD"), rows, title=title)
    output.say(f"held in reservations: {report.held_usd:.4f} USD ({report.held_count} open)")
