"""The gate's transaction: lock, read, decide, write, commit, in that order.

Why a cap written in a rule holds exactly, under any concurrency, on SQLite or PostgreSQL:

1. Every admission runs in one transaction that first takes the ledger-wide write lock
   (``BEGIN IMMEDIATE`` on SQLite; ``pg_advisory_xact_lock`` on PostgreSQL, whose
   statements then run under READ COMMITTED, each seeing every commit made before it). So
   admissions run one after another, and each reads every earlier admission's rows.
2. Under the lock it reads the snapshot: settled usage plus every held reservation.
3. The decision is a pure function of that snapshot, the request, the policy and the
   prices (``arbiter.gate.decide``). When it admits, it holds a reservation that is a true
   upper bound of what the provider can bill for the route (``arbiter.bound``).
4. The reservation, task row and decision record are written, then COMMIT waits for the
   disk. Only then is the task published, so nothing runs without its record.
5. Money leaves a reservation only by settling (replaced by the real cost, which cannot
   exceed the bound), releasing (nothing was billed) or expiring. Settles and other writes
   may run outside the lock: they only lower what is held or replace it by less, so a
   snapshot taken under the lock can only overstate what was committed.

Hence the held-plus-settled sum that a rule compares with its cap never understates the
spend, and no two admissions both take the same last dollars.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert

from arbiter.ledger import approvals, decisions, reservations
from arbiter.ledger.budget import Snapshot, read_snapshot
from arbiter.ledger.models import DecisionRecord, Reservation, table
from arbiter.ledger.windows import Windows

_reservations = table(Reservation)
_decisions = table(DecisionRecord)


class AdmissionTx:
    """One admission's statements, on a connection that holds the write lock."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def snapshot(self, w: Windows, task_id: str, attempt: int) -> Snapshot:
        """Budget and research facts, leaving out what the attempt itself holds."""
        return read_snapshot(self.conn, w, task_id, attempt)

    def close_held(
        self, task_id: str, attempt: int, status: str, reason: str | None, now: Any
    ) -> int:
        """Move the attempt's held reservations to ``status``; returns how many."""
        return reservations.close_held(self.conn, task_id, attempt, status, reason, now)

    def is_granted(self, task_id: str) -> bool:
        """Whether a person granted the parked task."""
        return approvals.is_granted(self.conn, task_id)

    def write(self, rows: decisions.AdmissionRows) -> None:
        """The reservation (if any), the task row and the decision record."""
        conn = self.conn
        if rows.reservation is not None:
            conn.execute(insert(_reservations), rows.reservation)
        conn.execute(decisions.UPSERTS[conn.dialect.name], rows.task)
        conn.execute(insert(_decisions), rows.decision)

    def request_approval(self, task_id: str, reason: str | None, now: Any) -> None:
        """Park the task: a pending approval, unless one is pending already."""
        approvals.request(self.conn, task_id, reason, now)
