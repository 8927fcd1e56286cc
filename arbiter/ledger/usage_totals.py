"""Running totals of settled usage, kept in step with model_calls.

Settling adds the call to its local day's row (in the configured zone) and to its UTC
minute's row, in the same transaction that records the call, so the gate reads a month
from at most 31 rows and the rolling hour from at most 60. Changing the time zone starts
rows for the new zone; ``rebuild`` refills them from the calls (``Ledger.upgrade`` does
so when the zone has none yet). Minute rows older than two hours are pruned by the
maintenance sweep.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from arbiter.ledger.models import ModelCall, UsageDay, UsageMinute, table
from arbiter.ledger.windows import from_db

_days = table(UsageDay)
_minutes = table(UsageMinute)
KEEP_MINUTES = timedelta(hours=2)
_calls = table(ModelCall)
MEASURES = ("cost_nusd", "tokens", "cloud_calls", "calls")


def local_day(moment: datetime, zone: ZoneInfo) -> date:
    """The local calendar day of a stored naive-UTC instant."""
    return from_db(moment).astimezone(zone).date()


def _upsert(dialect_insert: Any) -> Any:
    statement = dialect_insert(_days)
    return statement.on_conflict_do_update(
        index_elements=[_days.c.zone, _days.c.day],
        set_={m: _days.c[m] + statement.excluded[m] for m in MEASURES},
    )


def _upsert_minute(dialect_insert: Any) -> Any:
    statement = dialect_insert(_minutes)
    return statement.on_conflict_do_update(
        index_elements=[_minutes.c.minute],
        set_={"tokens": _minutes.c.tokens + statement.excluded.tokens},
    )


_ADD = {"postgresql": _upsert(postgresql.insert), "sqlite": _upsert(sqlite.insert)}
_ADD_MINUTE = {
    "postgresql": _upsert_minute(postgresql.insert),
    "sqlite": _upsert_minute(sqlite.insert),
}


def minute_of(moment: datetime) -> datetime:
    """The start of a stored naive-UTC instant's minute."""
    return moment.replace(second=0, microsecond=0)


def add(
    conn: Connection, zone: ZoneInfo, recorded: datetime, cost_nusd: int, tokens: int, cloud: bool
) -> None:
    """Count one settled call in its local day and its UTC minute."""
    conn.execute(_ADD_MINUTE[conn.dialect.name], {"minute": minute_of(recorded), "tokens": tokens})
    conn.execute(
        _ADD[conn.dialect.name],
        {
            "zone": zone.key,
            "day": local_day(recorded, zone),
            "cost_nusd": cost_nusd,
            "tokens": tokens,
            "cloud_calls": int(cloud),
            "calls": 1,
        },
    )


def needs_rebuild(conn: Connection, zone: ZoneInfo) -> bool:
    """True when calls exist but this zone has no day rows yet (a new zone, or 0003)."""
    has_days = conn.execute(select(_days.c.day).where(_days.c.zone == zone.key).limit(1)).first()
    if has_days is not None:
        return False
    return conn.execute(select(_calls.c.id).limit(1)).first() is not None


def _totals(conn: Connection, zone: ZoneInfo) -> Iterator[tuple[date, list[int]]]:
    totals: dict[date, list[int]] = {}
    rows = conn.execute(
        select(_calls.c.recorded_at, _calls.c.cost_nusd, _calls.c.total_tokens, _calls.c.tier)
    )
    for recorded, cost, tokens, tier in rows:
        acc = totals.setdefault(local_day(recorded, zone), [0, 0, 0, 0])
        acc[0] += int(cost)
        acc[1] += int(tokens)
        acc[2] += int(tier == "cloud")
        acc[3] += 1
    yield from sorted(totals.items())


def prune_minutes(conn: Connection, now: datetime) -> None:
    """Drop minute rows no rolling hour can reach any more."""
    conn.execute(delete(_minutes).where(_minutes.c.minute < now - KEEP_MINUTES))


def rebuild(conn: Connection, zone: ZoneInfo, now: datetime) -> int:
    """Recompute this zone's day rows (and the minute rows a rolling hour can still reach)
    from the calls; returns days."""
    conn.execute(delete(_days).where(_days.c.zone == zone.key))
    conn.execute(delete(_minutes))
    minutes: dict[datetime, int] = {}
    recent = select(_calls.c.recorded_at, _calls.c.total_tokens).where(
        _calls.c.recorded_at >= now - KEEP_MINUTES
    )
    for recorded, tokens in conn.execute(recent):
        key = minute_of(recorded)
        minutes[key] = minutes.get(key, 0) + int(tokens)
    if minutes:
        conn.execute(insert(_minutes), [{"minute": m, "tokens": t} for m, t in minutes.items()])
    rows = [
        {"zone": zone.key, "day": day, **dict(zip(MEASURES, acc, strict=True))}
        for day, acc in _totals(conn, zone)
    ]
    if rows:
        conn.execute(insert(_days), rows)
    return len(rows)
