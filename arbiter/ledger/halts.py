"""The scoped kill switch, and the queued tasks it holds back.

A halt is on for a scope: ``all`` (every task), ``cloud`` or ``local`` (the tasks whose
route has that tier). Policies see ``system.halted`` (scope ``all`` is on) and
``system.halted_scopes`` (the scopes that are on). The gate refuses a task whose route a
halt covers; a worker that receives one already queued sets it aside here, releasing its
reservation, and it is published again, as the same attempt and through the gate, once
its scope resumes (``resumable``).

Why no call starts after a halt: ``set_halt`` runs under the ledger's write lock and
updates the scope rows, and a worker's last check before its call (``state(lock=True)``)
reads those rows with a share lock (PostgreSQL; SQLite has one writer anyway). So a
check either commits before the halt, and its call is one of the ``in_flight`` the halt
reports, or reads the halt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from arbiter.errors import InputError
from arbiter.ledger.models import HALT_SCOPES, Halt, HaltedTask, Reservation, Task, table
from arbiter.ledger.windows import from_db

_halts = table(Halt)
_waiting = table(HaltedTask)
_tasks = table(Task)
_res = table(Reservation)
SCOPES = HALT_SCOPES


@dataclass(frozen=True, slots=True)
class ScopeHalt:
    """One scope that is halted: since when, by whom, and why."""

    scope: str
    reason: str
    since: datetime | None
    halted_by: str | None


@dataclass(frozen=True, slots=True)
class HaltState:
    """The kill switch: which scopes are on. ``halted`` is true when any scope is."""

    halted: bool
    reason: str | None = None  # the reasons of the scopes that are on, one line
    scopes: tuple[ScopeHalt, ...] = ()

    @classmethod
    def of(cls, scopes: tuple[ScopeHalt, ...]) -> HaltState:
        reason = "; ".join(f"{s.scope}: {s.reason}" for s in scopes) if scopes else None
        if len(scopes) == 1:
            reason = scopes[0].reason
        return cls(bool(scopes), reason, scopes)

    @property
    def names(self) -> list[str]:
        """The scopes that are on, as ``system.halted_scopes`` lists them."""
        return [s.scope for s in self.scopes]

    def covering(self, tier: str | None) -> ScopeHalt | None:
        """The halt that stops work on ``tier`` (scope all first), or None."""
        for wanted in ("all", tier):
            for s in self.scopes:
                if s.scope == wanted:
                    return s
        return None

    def sentences(self) -> list[str]:
        """One line per scope that is on, for `up`, `status` and `halt` to print."""
        lines = []
        for s in self.scopes:
            what = "all work" if s.scope == "all" else f"{s.scope} work"
            when = f" since {s.since:%Y-%m-%d %H:%M} UTC" if s.since else ""
            who = f" by {s.halted_by}" if s.halted_by else ""
            lines.append(
                f"{what} is halted{when}{who}: {s.reason} "
                f"(`sovereign resume --scope {s.scope}` clears it)"
            )
        return lines


def state(conn: Connection, *, lock: bool = False) -> HaltState:
    """The switch as of now; ``lock`` share-locks the scope rows until the transaction
    ends, so a concurrent ``set_halt`` waits for it (or it for the halt)."""
    query = select(_halts).where(_halts.c.halted.is_(True)).order_by(_halts.c.scope)
    if lock:
        query = select(_halts).order_by(_halts.c.scope).with_for_update(read=True)
    rows = [row for row in conn.execute(query) if row.halted]
    return HaltState.of(
        tuple(
            ScopeHalt(
                row.scope,
                row.reason or "no reason given",
                from_db(row.since) if row.since else None,
                row.halted_by,
            )
            for row in rows
        )
    )


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise InputError(f"unknown halt scope {scope!r}; use one of: {', '.join(SCOPES)}")
    return scope


def set_halt(
    conn: Connection, scope: str, on: bool, reason: str | None, by: str | None, now: datetime
) -> list[tuple[str, int, str]]:
    """Turn ``scope`` on or off; returns the calls already in flight that it covers
    (task id, attempt, tier): they finish, and nothing new starts. Run it under the
    ledger's write lock."""
    check_scope(scope)
    values: dict[str, Any] = {"halted": on, "updated_at": now}
    if on:
        values.update(reason=reason or "no reason given", since=now, halted_by=by)
    else:
        values.update(reason=None, since=None, halted_by=None)
    done = conn.execute(update(_halts).where(_halts.c.scope == scope).values(**values))
    if not done.rowcount:
        conn.execute(insert(_halts), {"scope": scope, **values})
    if not on:
        return []
    query = (
        select(_tasks.c.id, _tasks.c.attempt, _res.c.tier)
        .join(
            _res,
            (_res.c.task_id == _tasks.c.id)
            & (_res.c.attempt == _tasks.c.attempt)
            & (_res.c.status == "held"),
        )
        .where(_tasks.c.status == "running")
        .order_by(_tasks.c.id)
    )
    if scope != "all":
        query = query.where(_res.c.tier == scope)
    return [(row.id, int(row.attempt), str(row.tier)) for row in conn.execute(query)]


def set_aside(conn: Connection, task_id: str, attempt: int, tier: str, now: datetime) -> None:
    """Hold a queued task back until its tier's halt is cleared."""
    conn.execute(delete(_waiting).where(_waiting.c.task_id == task_id))
    conn.execute(
        insert(_waiting), {"task_id": task_id, "attempt": attempt, "tier": tier, "since": now}
    )


def waiting(conn: Connection) -> list[tuple[str, int, str]]:
    """Every task set aside by a halt: (task id, attempt, tier)."""
    rows = conn.execute(select(_waiting).order_by(_waiting.c.since, _waiting.c.task_id))
    return [(row.task_id, int(row.attempt), str(row.tier)) for row in rows]


def claim_resumable(conn: Connection) -> list[tuple[str, int, str, dict[str, Any]]]:
    """Take the tasks set aside whose tier no halt covers any more: (task id, attempt,
    tier, the payload to publish again). Each is claimed once, whoever else resumes it."""
    now_state = state(conn)
    claimed = []
    for task_id, attempt, tier in waiting(conn):
        if now_state.covering(tier) is not None:
            continue
        gone = conn.execute(delete(_waiting).where(_waiting.c.task_id == task_id))
        if not gone.rowcount:
            continue
        payload = conn.execute(select(_tasks.c.payload).where(_tasks.c.id == task_id)).scalar()
        claimed.append((task_id, attempt, tier, dict(payload or {})))
    return claimed


def unclaim(conn: Connection, task_id: str, attempt: int, tier: str, now: datetime) -> None:
    """Put a claimed task back (it could not be published); the next resume retries it."""
    set_aside(conn, task_id, attempt, tier, now)
