"""Budget windows and time: calendar day and month in the configured zone, rolling hour.

The ledger stores naive UTC; a clock is any callable returning an aware datetime, so tests
can stand at one second before midnight in Paris.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

Clock = Callable[[], datetime]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ROLLING_HOUR = timedelta(hours=1)


def system_clock() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def to_db(moment: datetime) -> datetime:
    """An aware datetime as the naive UTC the tables hold."""
    if moment.tzinfo is None:
        raise ValueError("the ledger's clock must return aware datetimes")
    return moment.astimezone(UTC).replace(tzinfo=None)


def from_db(moment: datetime) -> datetime:
    """A stored naive UTC datetime as an aware one."""
    return moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Windows:
    """Start of each budget window for one instant, in naive UTC for queries."""

    now: datetime
    hour_start: datetime
    day_start: datetime
    month_start: datetime
    today: date  # local calendar day
    month_first: date  # its month's first day
    zone: str


def windows(now: datetime, zone: ZoneInfo) -> Windows:
    """The windows containing ``now``: day and month are calendar periods in ``zone``."""
    local = now.astimezone(zone)
    day = datetime(local.year, local.month, local.day, tzinfo=zone)
    month = datetime(local.year, local.month, 1, tzinfo=zone)
    return Windows(
        now=to_db(now),
        hour_start=to_db(now - ROLLING_HOUR),
        day_start=to_db(day),
        month_start=to_db(month),
        today=day.date(),
        month_first=month.date(),
        zone=zone.key,
    )


def day_start(now: datetime, zone: ZoneInfo, days_back: int = 0) -> datetime:
    """Local midnight ``days_back`` calendar days before today's, as naive UTC."""
    local = now.astimezone(zone).date() - timedelta(days=days_back)
    return to_db(datetime(local.year, local.month, local.day, tzinfo=zone))


def time_facts(now: datetime, zone: ZoneInfo) -> dict[str, object]:
    """The ``time`` facts of the policy language."""
    local = now.astimezone(zone)
    return {
        "hour": local.hour,
        "weekday": WEEKDAYS[local.weekday()],
        "date": local.date().isoformat(),
    }
