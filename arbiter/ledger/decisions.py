"""Decision records and the task rows the gate writes alongside them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Connection, bindparam, select, text
from sqlalchemy.dialects import postgresql, sqlite

from arbiter.ledger.models import NANO, DecisionRecord, Reservation, Task, table
from arbiter.ledger.windows import from_db

_decisions = table(DecisionRecord)
_tasks = table(Task)
_reservations = table(Reservation)


@dataclass(frozen=True, slots=True)
class StoredDecision:
    """A decision as the ledger holds it: enough to explain it afterwards."""

    id: int
    task_id: str
    attempt: int
    policy_version: str | None
    verdict: str
    route: dict[str, Any] | None
    candidate: str | None
    decided_by: str | None
    reason: str | None
    retry_after_s: float | None
    reserved_usd: float
    facts: dict[str, Any]
    trace: list[Any] | None
    created_at: datetime


def _upsert(dialect_insert: Any) -> Any:
    statement = dialect_insert(_tasks)
    kept = {"id", "created_at", "result"}
    return statement.on_conflict_do_update(
        index_elements=[_tasks.c.id],
        set_={c.name: statement.excluded[c.name] for c in _tasks.columns if c.name not in kept},
    )


# Insert the task row, or update it when the task passes the gate again (a retry).
UPSERTS: dict[str, Any] = {
    "postgresql": _upsert(postgresql.insert),
    "sqlite": _upsert(sqlite.insert),
}


@dataclass(frozen=True, slots=True)
class AdmissionRows:
    """The rows one admission writes: its reservation (if any), task row and record."""

    reservation: dict[str, Any] | None
    task: dict[str, Any]
    decision: dict[str, Any]

    def pg_params(self, expected_version: int | None = None) -> dict[str, Any]:
        """The values of ``PG_ADMISSION``, which writes all three in one statement.

        With ``expected_version`` the writes happen only if the ledger's fact counter is
        still that and the attempt holds no reservation yet.
        """
        reserve = self.reservation or dict.fromkeys(RESERVATION_FIELDS)
        params = {f"r_{k}": reserve[k] for k in RESERVATION_FIELDS}
        params.update({f"t_{k}": v for k, v in self.task.items()})
        params.update({f"d_{k}": v for k, v in self.decision.items()})
        params["reserve"] = self.reservation is not None
        params["check"] = expected_version is not None
        params["expected"] = expected_version if expected_version is not None else 0
        return params


def admission_rows(
    task_id: str,
    attempt: int,
    now: datetime,
    reservation: dict[str, Any] | None,
    task: dict[str, Any],
    decision: dict[str, Any],
) -> AdmissionRows:
    """The full rows of one admission (``reservation`` names RESERVATION_FIELDS)."""
    held = None
    if reservation is not None:
        held = {
            "task_id": task_id,
            "attempt": attempt,
            **reservation,
            "status": "held",
            "created_at": now,
        }
    return AdmissionRows(
        held,
        {"id": task_id, "attempt": attempt, **task, "created_at": now, "updated_at": now},
        {"task_id": task_id, "attempt": attempt, **decision, "created_at": now},
    )


RESERVATION_FIELDS = ("amount_nusd", "tokens", "tier", "provider", "model", "expires_at")
TASK_FIELDS = (
    "id", "kind", "source", "status", "queue", "attempt", "payload", "error",
    "confidential", "depth", "topic", "created_at", "updated_at",
)  # fmt: skip
DECISION_FIELDS = (
    "task_id", "attempt", "policy_version", "verdict", "route", "candidate", "decided_by",
    "reason", "retry_after_s", "reserved_nusd", "facts", "trace", "created_at",
)  # fmt: skip


def _pg_admission() -> Any:
    task_updates = ", ".join(
        f"{c} = excluded.{c}" for c in TASK_FIELDS if c not in {"id", "created_at"}
    )
    # ``ok`` has one row when the writes may go ahead: always, unless ``check`` asks that
    # the ledger's fact counter still be ``expected`` and the attempt hold nothing yet
    # (the gate's one-round-trip admission decided from facts read before the lock).
    sql = f"""
WITH ok AS (
    SELECT 1 AS go
    WHERE NOT :check OR (
        EXISTS (SELECT 1 FROM ledger_version WHERE id = 1 AND version = :expected)
        AND NOT EXISTS (
            SELECT 1 FROM reservations
            WHERE task_id = :d_task_id AND attempt = :d_attempt AND status = 'held'
        )
    )
), r AS (
    INSERT INTO reservations (task_id, attempt, {", ".join(RESERVATION_FIELDS)},
                              status, created_at)
    SELECT :d_task_id, :d_attempt, {", ".join(f":r_{c}" for c in RESERVATION_FIELDS)},
           'held', :d_created_at
    FROM ok WHERE :reserve
), t AS (
    INSERT INTO tasks ({", ".join(TASK_FIELDS)})
    SELECT {", ".join(f":t_{c}" for c in TASK_FIELDS)} FROM ok
    ON CONFLICT (id) DO UPDATE SET {task_updates}
), d AS (
    INSERT INTO decisions ({", ".join(DECISION_FIELDS)})
    SELECT {", ".join(f":d_{c}" for c in DECISION_FIELDS)} FROM ok
    RETURNING 1
)
SELECT count(*) AS written FROM d
"""
    types: dict[str, Any] = {}
    for prefix, tbl, fields in (
        ("r", _reservations, RESERVATION_FIELDS),
        ("t", _tasks, TASK_FIELDS),
        ("d", _decisions, DECISION_FIELDS),
    ):
        for name in fields:
            types[f"{prefix}_{name}"] = tbl.c[name].type
    statement = text(sql).bindparams(
        *(bindparam(name, type_=type_) for name, type_ in types.items()),
        bindparam("reserve", type_=Boolean()),
        bindparam("check", type_=Boolean()),
        bindparam("expected", type_=BigInteger()),
    )
    return statement


# On PostgreSQL the three writes are one statement (data-modifying CTEs).
PG_ADMISSION = _pg_admission()


def listing(
    conn: Connection, task_id: str | None = None, limit: int | None = None
) -> list[StoredDecision]:
    """Decision records in the order they were taken (oldest first)."""
    query = select(_decisions).order_by(_decisions.c.id)
    if task_id is not None:
        query = query.where(_decisions.c.task_id == task_id)
    if limit is not None:
        query = query.limit(limit)
    return [
        StoredDecision(
            id=row.id,
            task_id=row.task_id,
            attempt=row.attempt,
            policy_version=row.policy_version,
            verdict=row.verdict,
            route=row.route,
            candidate=row.candidate,
            decided_by=row.decided_by,
            reason=row.reason,
            retry_after_s=row.retry_after_s,
            reserved_usd=row.reserved_nusd / NANO,
            facts=row.facts,
            trace=row.trace,
            created_at=from_db(row.created_at),
        )
        for row in conn.execute(query)
    ]


def exists(conn: Connection, task_id: str, attempt: int) -> bool:
    """Whether the gate's decision on this attempt is in the ledger."""
    found = conn.execute(
        select(_decisions.c.id)
        .where(_decisions.c.task_id == task_id, _decisions.c.attempt == attempt)
        .limit(1)
    ).first()
    return found is not None


def task_row(conn: Connection, task_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(_tasks).where(_tasks.c.id == task_id)).first()
    return dict(row._mapping) if row is not None else None
