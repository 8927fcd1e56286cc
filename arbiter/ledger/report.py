"""The spend report: settled calls over the last N calendar days, grouped one way."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, select

from arbiter.ledger.models import NANO, ModelCall, Reservation, Task, table
from arbiter.ledger.windows import from_db

GroupBy = Literal["model", "provider", "kind", "day"]
GROUPS: tuple[GroupBy, ...] = ("model", "provider", "kind", "day")

_calls = table(ModelCall)
_tasks = table(Task)
_res = table(Reservation)


@dataclass(frozen=True, slots=True)
class SpendRow:
    """Spend and tokens of one group."""

    key: str
    calls: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class SpendReport:
    """Settled spend since ``since`` (local midnight), plus what is still held."""

    by: GroupBy
    since: datetime
    rows: list[SpendRow]
    total: SpendRow
    held_usd: float
    held_count: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "since": self.since.isoformat(),
            "rows": [asdict(r) for r in self.rows],
            "total": asdict(self.total),
            "held_usd": self.held_usd,
            "held_reservations": self.held_count,
        }


def _row(key: str, calls: int, inp: int, cached: int, out: int, nusd: int) -> SpendRow:
    return SpendRow(key, int(calls), int(inp), int(cached), int(out), int(nusd) / NANO)


def spend(conn: Connection, since: datetime, by: GroupBy, zone: ZoneInfo) -> SpendReport:
    """Group settled calls recorded at or after ``since`` (naive UTC)."""
    c = _calls.c
    measures = (
        func.count(),
        func.coalesce(func.sum(c.input_tokens), 0),
        func.coalesce(func.sum(c.cached_tokens + c.cache_write_tokens), 0),
        func.coalesce(func.sum(c.output_tokens), 0),
        func.coalesce(func.sum(c.cost_nusd), 0),
    )
    source = _calls.outerjoin(_tasks, _tasks.c.id == c.task_id)
    rows: list[SpendRow]
    if by == "day":
        # Days are local calendar days: convert in Python, the same on both databases.
        totals: dict[str, list[int]] = {}
        query = select(
            c.recorded_at,
            c.input_tokens,
            c.cached_tokens + c.cache_write_tokens,
            c.output_tokens,
            c.cost_nusd,
        ).where(c.recorded_at >= since)
        for recorded, inp, cached, out, nusd in conn.execute(query):
            day = from_db(recorded).astimezone(zone).date().isoformat()
            acc = totals.setdefault(day, [0, 0, 0, 0, 0])
            for i, value in enumerate((1, inp, cached, out, nusd)):
                acc[i] += int(value)
        rows = [_row(day, *acc) for day, acc in sorted(totals.items())]
    else:
        key = {
            "model": c.provider + "/" + c.model,
            "provider": c.provider,
            "kind": func.coalesce(_tasks.c.kind, "unknown"),
        }[by]
        query = (
            select(key.label("key"), *measures)
            .select_from(source)
            .where(c.recorded_at >= since)
            .group_by(key)
        )
        grouped: list[Any] = list(conn.execute(query))
        rows = [_row(str(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in grouped]
        rows.sort(key=lambda r: (-r.cost_usd, r.key))
    total = _row(
        "total",
        sum(r.calls for r in rows),
        sum(r.input_tokens for r in rows),
        sum(r.cached_tokens for r in rows),
        sum(r.output_tokens for r in rows),
        round(sum(r.cost_usd for r in rows) * NANO),
    )
    held = conn.execute(
        select(func.count(), func.coalesce(func.sum(_res.c.amount_nusd), 0)).where(
            _res.c.status == "held"
        )
    ).one()
    return SpendReport(
        by, from_db(since).astimezone(zone), rows, total, int(held[1]) / NANO, int(held[0])
    )
