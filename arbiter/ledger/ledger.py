"""The ledger: one object over the database that the gate, workers and CLI share.

Each method is one transaction. ``serialized()`` hands out the connection of a transaction
that holds the ledger-wide write lock (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on
PostgreSQL); the gate reads the budget, decides and reserves inside it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, exc

from arbiter import migrations
from arbiter.ledger import (
    approvals,
    control,
    decisions,
    explain,
    halts,
    leases,
    notes,
    research,
    reservations,
    usage_totals,
)
from arbiter.ledger.admission import AdmissionTx, PgAdmissionTx
from arbiter.ledger.approvals import ApprovalRecord
from arbiter.ledger.budget import read_facts
from arbiter.ledger.control import HaltState, PolicyRecord
from arbiter.ledger.db import (
    create_ledger_engine,
    describe,
    normalise_url,
    pg_autocommit,
    plain_connection,
    serialized_connection,
    translate_errors,
)
from arbiter.ledger.decisions import StoredDecision
from arbiter.ledger.explain import TaskHistory
from arbiter.ledger.models import NANO
from arbiter.ledger.prices import LOCAL_PROVIDERS, PriceTable
from arbiter.ledger.report import GroupBy, SpendReport, spend
from arbiter.ledger.research import Topic
from arbiter.ledger.reservations import CallRecord, Timings
from arbiter.ledger.windows import Clock, day_start, system_clock, to_db, windows
from arbiter.settings import Settings
from arbiter.usage import Usage

log = logging.getLogger("sovereign.ledger")


def _instant(value: datetime | float | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True, slots=True)
class AttemptStart:
    """A worker's view of an attempt just before the model call."""

    done: CallRecord | None
    halted: bool  # a halt covers this attempt's tier (scope all, or the tier's own)
    held: bool
    recorded: bool = True  # the ledger has the attempt's decision (False: lost, or never made)
    died: int = 0  # >0: an earlier delivery of this attempt died in its call (deaths so far)
    stale: bool = False  # the task has moved on (a later attempt, or poisoned)
    tier: str | None = None  # the tier its reservation was taken for
    halt_reason: str | None = None


DIED_IN_CALL = (
    "the worker process died while this attempt was in its model call; charged its full "
    "reservation, since the provider may have billed the call (usage unknown)"
)


class Ledger:
    """Budgets, reservations, calls, decisions and the small shared state, in one database."""

    def __init__(
        self,
        url: str,
        *,
        timezone: str | ZoneInfo = "UTC",
        clock: Clock | None = None,
        reservation_ttl_s: float = 3600.0,
        prices: PriceTable | None = None,
        lease_s: float = 40.0,
    ) -> None:
        self.url = normalise_url(url)
        self.zone = timezone if isinstance(timezone, ZoneInfo) else ZoneInfo(timezone)
        self.clock: Clock = clock or system_clock
        self.reservation_ttl = timedelta(seconds=reservation_ttl_s)
        self.lease = timedelta(seconds=lease_s)
        self.prices = prices
        with translate_errors(self.url):
            self.engine = create_ledger_engine(self.url)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, upgrade: bool = True, clock: Clock | None = None
    ) -> Ledger:
        """The ledger the settings describe, migrated to the newest schema by default."""
        ledger = cls(
            settings.database_url,
            timezone=settings.timezone,
            clock=clock,
            reservation_ttl_s=settings.reservation_ttl_s,
            lease_s=settings.lease_s,
        )
        if settings.prices_path.exists():
            ledger.prices = PriceTable.load(settings.prices_path)
        if upgrade:
            ledger.upgrade()
        return ledger

    def __repr__(self) -> str:
        return f"Ledger({describe(self.url)!r})"

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        """Close pooled connections (a forked or finished process)."""
        self.engine.dispose()

    def now(self) -> datetime:
        """The clock's time as the naive UTC the tables hold."""
        return to_db(self.clock())

    # --- transactions ---------------------------------------------------------------------

    @contextmanager
    def serialized(self) -> Iterator[Connection]:
        """A transaction holding the ledger-wide write lock until it commits."""
        with translate_errors(self.url), serialized_connection(self.engine) as conn:
            yield conn

    @contextmanager
    def admission(self) -> Iterator[AdmissionTx]:
        """The gate's serialized transaction (see ``arbiter.ledger.admission``).

        It commits, waiting for the disk, when the block ends and rolls back when it
        raises; a database that cannot be reached raises ``LedgerUnavailable``.
        """
        if self.dialect == "postgresql":
            with translate_errors(self.url), pg_autocommit(self.engine) as conn:
                tx = PgAdmissionTx(conn)
                try:
                    yield tx
                    tx.commit()
                except BaseException:
                    tx.rollback()
                    raise
            return
        with self.serialized() as conn:
            yield AdmissionTx(conn)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A transaction that writes. SQLite has one writer at a time anyway, and taking the
        write lock up front avoids a deferred transaction failing when it starts to write."""
        if self.dialect == "sqlite":
            with self.serialized() as conn:
                yield conn
            return
        with translate_errors(self.url), plain_connection(self.engine) as conn:
            yield conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A transaction that only reads (never blocks on writers)."""
        with translate_errors(self.url), plain_connection(self.engine) as conn:
            yield conn

    def upgrade(self) -> str:
        """Apply pending migrations; returns the schema revision.

        Also fills the per-day totals of the configured zone when it has none yet.
        """
        with self.serialized() as conn:
            before = migrations.current_revision(conn)
            revision = migrations.upgrade(conn)
            migrated = before is not None and before != revision
            if migrated or usage_totals.needs_rebuild(conn, self.zone):
                usage_totals.rebuild(conn, self.zone, self.now())
            return revision

    def revision(self) -> str | None:
        with self.reading() as conn:
            return migrations.current_revision(conn)

    # --- facts ------------------------------------------------------------------------------

    def budget_facts(self, conn: Connection | None = None) -> dict[str, Any]:
        """``budget`` facts now (settled usage plus held reservations)."""
        return self._facts(conn)[0]

    def research_facts(self, conn: Connection | None = None) -> dict[str, Any]:
        return self._facts(conn)[1]

    def _facts(self, conn: Connection | None) -> tuple[dict[str, Any], dict[str, Any]]:
        if conn is not None:
            return read_facts(conn, windows(self.clock(), self.zone))
        with self.reading() as own:
            return read_facts(own, windows(self.clock(), self.zone))

    # --- reservations and calls -------------------------------------------------------------

    def settle(
        self,
        task_id: str,
        attempt: int,
        usage: Usage,
        provider: str,
        model: str,
        timings: Timings | None = None,
        result: dict[str, Any] | None = None,
        *,
        tier: str | None = None,
        started_at: datetime | float | None = None,
        finished_at: datetime | float | None = None,
        status: str = "succeeded",
        error: str | None = None,
        cost_usd: float | None = None,
    ) -> CallRecord:
        """Replace the attempt's reservation by the real cost; a second settle charges nothing.

        The cost comes from ``cost_usd``, else the price table (``self.prices``; a gate lends
        its own), else — a billed call nobody can price — the amount held for it.
        Timings are a ``Timings`` or ``started_at``/``finished_at`` (aware datetimes or Unix
        seconds). ``result`` is stored on the task, for a redelivered message to answer from.
        """
        if timings is None:
            timings = Timings(_instant(started_at), _instant(finished_at))
        now = self.now()
        try:
            with self.transaction() as conn:
                existing = reservations.find_call(conn, task_id, attempt)
                if existing is not None:
                    return existing
                held = reservations.held_amount(conn, task_id, attempt)
                cost_nusd = self._cost_nusd(provider, model, usage, cost_usd)
                if cost_nusd is None:
                    # No price, yet the call was billed: charge what was held, the upper bound.
                    cost_nusd = held
                elif cost_nusd > held:
                    # The reservation is an upper bound: this must never happen.
                    log.error(
                        "DEFECT: task %s attempt %s settled at %d nano-USD, above its "
                        "reservation of %d (usage %s on %s/%s)",
                        task_id, attempt, cost_nusd, held, usage.to_dict(), provider, model,
                    )  # fmt: skip
                tier = (
                    tier
                    or reservations.held_tier(conn, task_id, attempt)
                    or ("local" if provider in LOCAL_PROVIDERS else "cloud")
                )
                reservations.insert_call(
                    conn,
                    task_id=task_id,
                    attempt=attempt,
                    tier=tier,
                    provider=provider,
                    model=model,
                    usage=usage,
                    cost_nusd=cost_nusd,
                    status=status,
                    error=error,
                    timings=timings,
                    result=result,
                    now=now,
                    to_db=to_db,
                    reserved_nusd=held,
                )
                usage_totals.add(
                    conn, self.zone, now, cost_nusd, usage.total_tokens, tier == "cloud"
                )
                reservations.close_held(conn, task_id, attempt, "settled", None, now)
                task_status = "succeeded" if status == "succeeded" else "failed"
                reservations.update_task(
                    conn, task_id, now, status=task_status, result=result, error=error
                )
        except exc.IntegrityError:
            # Another worker settled the same attempt between our check and insert.
            with self.reading() as conn:
                found = reservations.find_call(conn, task_id, attempt)
            if found is None:
                raise
            return found
        return CallRecord(
            task_id, attempt, tier, provider, model, usage, cost_nusd / NANO, status, result
        )

    def _cost_nusd(
        self, provider: str, model: str, usage: Usage, cost_usd: float | None
    ) -> int | None:
        if cost_usd is not None:
            return round(cost_usd * NANO)
        if self.prices is not None:
            price = self.prices.lookup(provider, model)
            if price is not None:
                return PriceTable.cost_nusd(price, usage)
        return 0 if provider in LOCAL_PROVIDERS else None

    def release(self, task_id: str, attempt: int, reason: str) -> int:
        """Free the attempt's held reservation (nothing was billed); returns how many."""
        with self.transaction() as conn:
            return reservations.close_held(conn, task_id, attempt, "released", reason, self.now())

    def expire_reservations(
        self, now: datetime | None = None, *, ttl_s: float | None = None
    ) -> int:
        """Expire held reservations past their TTL; returns how many (maintenance calls this).

        Each reservation's deadline was set when it was taken (TTL plus any throttle delay);
        ``ttl_s`` applies a different TTL to all of them at once.
        """
        moment = to_db(now) if now is not None else self.now()
        deadline = moment
        if ttl_s is not None:
            deadline = moment + self.reservation_ttl - timedelta(seconds=ttl_s)
        with self.transaction() as conn:
            usage_totals.prune_minutes(conn, moment)
            return len(reservations.expire_held(conn, moment, deadline))

    def reservation_held(self, task_id: str, attempt: int) -> bool:
        with self.reading() as conn:
            return reservations.is_held(conn, task_id, attempt)

    def succeeded_call(self, task_id: str, attempt: int) -> dict[str, Any] | None:
        """The stored result of an attempt that already succeeded, else None.

        A redelivered message answers from this and never calls the model again.
        """
        found = self.call_record(task_id, attempt)
        if found is None or not found.succeeded:
            return None
        return dict(found.result or {})

    def call_record(self, task_id: str, attempt: int) -> CallRecord | None:
        """The billed call of an attempt, if any."""
        with self.reading() as conn:
            return reservations.find_call(conn, task_id, attempt)

    def begin_attempt(self, task_id: str, attempt: int, worker: str | None = None) -> AttemptStart:
        """What a worker checks before calling a model, in one transaction.

        The attempt's billed call if it already succeeded (a redelivery answers from it),
        whether a halt covers its tier, and whether its reservation is still held; the task
        is marked running, with the worker's lease, only when the call may go ahead. A
        delivery of an attempt the ledger shows running means the last one died in its
        call: that attempt is charged as usage unknown (see ``leases``).
        """
        now = self.now()
        with self.transaction() as conn:
            found = reservations.find_call(conn, task_id, attempt)
            done = found if found is not None and found.succeeded else None
            # Share-locked: a halt being set waits for this check, or this check for it.
            tier = reservations.held_tier(conn, task_id, attempt)
            halt = halts.state(conn, lock=True).covering(tier)
            halted = halt is not None
            task = decisions.task_row(conn, task_id)
            if done is None and task is not None:
                if task["attempt"] > attempt or task["status"] == "poisoned":
                    return AttemptStart(None, halted, held=False, stale=True)
                if task["status"] == "running" and task["attempt"] == attempt:
                    death = self._charge_death(conn, task_id, attempt, now)
                    return AttemptStart(None, halted, held=False, died=death.died)
            held = reservations.is_held(conn, task_id, attempt)
            if done is None and held and not halted:
                reservations.update_task(
                    conn,
                    task_id,
                    now,
                    status="running",
                    attempt=attempt,
                    lease_until=now + self.lease,
                    worker=worker,
                )
            recorded = held or done is not None or decisions.exists(conn, task_id, attempt)
        return AttemptStart(
            done=done,
            halted=halted,
            held=held,
            recorded=recorded,
            tier=tier,
            halt_reason=halt.reason if halt is not None else None,
        )

    def _charge_death(
        self, conn: Connection, task_id: str, attempt: int, now: datetime
    ) -> leases.Death:
        death = leases.charge_unknown(conn, task_id, attempt, now, DIED_IN_CALL, to_db)
        usage_totals.add(conn, self.zone, now, death.charged_nusd, death.tokens, death.cloud)
        return death

    def charge_in_full(self, task_id: str, attempt: int, reason: str) -> None:
        """A call cut short (the time limit) may have been billed: charge its reservation
        as usage unknown and fail the task."""
        now = self.now()
        with self.transaction() as conn:
            death = leases.charge_unknown(conn, task_id, attempt, now, reason, to_db, died=False)
            usage_totals.add(conn, self.zone, now, death.charged_nusd, death.tokens, death.cloud)

    def renew_lease(self, task_id: str, attempt: int) -> bool:
        """The worker is alive and still in the call: extend its lease."""
        with self.transaction() as conn:
            return leases.renew(conn, task_id, attempt, self.now() + self.lease)

    def reap_dead(self) -> list[leases.Death]:
        """Charge every running attempt whose lease ran out (its worker died)."""
        now = self.now()
        with self.transaction() as conn:
            return [
                self._charge_death(conn, task_id, attempt, now)
                for task_id, attempt in leases.expired(conn, now)
            ]

    def poison(self, task_id: str, reason: str) -> None:
        """Fail a task for good: it is never delivered to a model again."""
        with self.transaction() as conn:
            leases.poison(conn, task_id, self.now(), reason)

    def fail_task(self, task_id: str, attempt: int, error: str, *, release: bool = True) -> None:
        """Mark the task failed; free the attempt's reservation unless a call was billed."""
        now = self.now()
        with self.transaction() as conn:
            if release:
                reservations.close_held(conn, task_id, attempt, "released", error, now)
            reservations.update_task(conn, task_id, now, status="failed", error=error)

    # --- report -----------------------------------------------------------------------------

    def spend_report(self, days: int = 1, by: GroupBy = "model") -> SpendReport:
        """Settled spend of the last ``days`` calendar days (today counts as one)."""
        since = day_start(self.clock(), self.zone, max(days, 1) - 1)
        with self.reading() as conn:
            return spend(conn, since, by, self.zone)

    # --- halt, approvals, research, policies ------------------------------------------------

    def halt_state(self) -> HaltState:
        """Which scopes of the kill switch are on, since when, by whom and why."""
        with self.reading() as conn:
            return halts.state(conn)

    def is_halted(self) -> bool:
        return self.halt_state().halted

    def set_halted(self, halted: bool, reason: str | None = None) -> None:
        """Turn scope ``all`` on or off (``set_halt`` takes any scope)."""
        self.set_halt("all", halted, reason)

    def approvals(self, status: str | None = "pending") -> list[ApprovalRecord]:
        with self.reading() as conn:
            return approvals.listing(conn, status)

    def grant(self, task_id: str, decided_by: str, note: str | None = None) -> dict[str, Any]:
        """Grant a parked task; returns its payload to publish again (it passes the gate)."""
        with self.transaction() as conn:
            return approvals.decide(
                conn, task_id, granted=True, decided_by=decided_by, note=note, now=self.now()
            )

    def reject(self, task_id: str, decided_by: str, note: str | None = None) -> dict[str, Any]:
        """Reject a parked task; returns its payload."""
        with self.transaction() as conn:
            return approvals.decide(
                conn, task_id, granted=False, decided_by=decided_by, note=note, now=self.now()
            )

    def add_topic(
        self,
        topic: str,
        depth: int = 0,
        parent_id: int | None = None,
        *,
        confidential: bool = False,
        parent_task: str | None = None,
        priority: int = 0,
        tags: Sequence[str] = (),
    ) -> int:
        """Add a topic to the backlog (a follow-up names the research that proposed it)."""
        with self.transaction() as conn:
            return research.add(
                conn, topic, depth, parent_id, self.now(), confidential, parent_task,
                priority=priority, tags=tags,
            )  # fmt: skip

    def claim_topic(self) -> Topic | None:
        """Claim the next pending topic; two callers never get the same one."""
        with self.serialized() as conn:
            return research.claim_next(conn, self.now())

    def unclaim_topic(self, topic_id: int) -> None:
        """Return a claimed topic to the backlog (its task could not be queued)."""
        with self.transaction() as conn:
            research.unclaim(conn, topic_id)

    def save_brief(self, topic_id: int, task_id: str | None, text: str) -> int:
        with self.transaction() as conn:
            return research.save_brief(conn, topic_id, task_id, text, self.now())

    def topic(self, topic_id: int) -> Topic | None:
        with self.reading() as conn:
            return research.get(conn, topic_id)

    def briefs(self, topic_id: int) -> list[str]:
        with self.reading() as conn:
            return research.briefs(conn, topic_id)

    def publish_policy(
        self, version: str, sources: dict[str, str], published_by: str | None = None
    ) -> None:
        with self.serialized() as conn:
            control.publish(conn, version, sources, published_by, self.now())

    def active_policy(self) -> PolicyRecord | None:
        with self.reading() as conn:
            return control.active_policy(conn)

    def policy_history(self, limit: int = 20) -> list[PolicyRecord]:
        with self.reading() as conn:
            return control.policy_history(conn, limit)

    # --- audit ------------------------------------------------------------------------------

    def decisions(self, task_id: str | None = None) -> list[StoredDecision]:
        """Decision records, oldest first (all of them, or one task's)."""
        with self.reading() as conn:
            return decisions.listing(conn, task_id)

    def task(self, task_id: str) -> dict[str, Any] | None:
        """The task row as a mapping of its columns, or None."""
        with self.reading() as conn:
            return decisions.task_row(conn, task_id)

    # --- policy history and explaining a task (issue 13, part 1) ----------------------------

    def policy_versions(self, prefix: str = "") -> list[str]:
        """The distinct published versions starting with ``prefix``, oldest first."""
        with self.reading() as conn:
            return control.policy_versions(conn, prefix)

    def policy_record(self, version: str, *, first: bool = False) -> PolicyRecord | None:
        """The newest publication of ``version`` (with ``first``, its first one)."""
        with self.reading() as conn:
            return control.policy_record(conn, version, first=first)

    def previous_policy(self) -> PolicyRecord | None:
        """The newest version published before the active one that differs from it."""
        with self.reading() as conn:
            return control.previous_policy(conn)

    def task_history(self, task_id: str) -> TaskHistory | None:
        """Everything the ledger holds about a task (``sovereign why``), or None."""
        with self.reading() as conn:
            return explain.read(conn, task_id)

    # --- research loop (issue 12): topics, beat's cycles, briefs ---------------------------

    def claim_topics(self, limit: int) -> list[Topic]:
        """Claim up to ``limit`` topics due now, highest priority first, then oldest."""
        with self.serialized() as conn:
            return research.claim_due(conn, self.now(), limit)

    def topic_task(self, topic_id: int, task_id: str) -> None:
        """Record the task that researches a claimed topic."""
        with self.transaction() as conn:
            research.set_task(conn, topic_id, task_id)

    def hold_topic(
        self, topic_id: int, status: str, reason: str | None, wait_until: datetime | None
    ) -> None:
        """A claimed topic was not admitted: ``waiting`` (until ``wait_until``, naive UTC,
        or a person's approval) or ``denied``."""
        with self.transaction() as conn:
            research.settle(conn, topic_id, status, reason, wait_until)

    def refused_topics(self) -> list[tuple[int, str]]:
        """Running topics whose task a later attempt's admission refused."""
        with self.reading() as conn:
            return research.refused(conn)

    def reconcile_topics(self) -> int:
        """End running topics whose task ended without a brief; returns how many changed."""
        with self.reading() as conn:
            stale = research.reconcile_needed(conn, self.now())
        if not stale:
            return 0  # the usual tick: nothing written
        with self.transaction() as conn:
            return research.reconcile(conn, self.now())

    def record_brief(self, **brief: Any) -> research.Stored:
        """Store a brief, its escalation and its follow-ups at once (``research.record``)."""
        with self.transaction() as conn:
            return research.record(conn, now=self.now(), **brief)

    def fail_research(self, task_id: str, attempt: int, topic_id: int | None, reason: str) -> None:
        """Fail a research task whose answer could not be read as a brief (its call was
        settled: nothing is released) and its topic."""
        now = self.now()
        with self.transaction() as conn:
            reservations.update_task(conn, task_id, now, status="failed", error=reason)
            research.fail(conn, topic_id, task_id, reason)

    def known_topic_texts(self, days: int) -> list[str]:
        """Topics a new follow-up must not repeat: the backlog and the last ``days`` days."""
        with self.reading() as conn:
            return research.known_texts(conn, self.now() - timedelta(days=days))

    def topics(self, status: str | None = None, limit: int = 500) -> list[Topic]:
        with self.reading() as conn:
            return research.listing(conn, status, limit)

    def topic_counts(self) -> dict[str, int]:
        with self.reading() as conn:
            return research.counts(conn)

    def brief(self, brief_id: int) -> research.Brief | None:
        with self.reading() as conn:
            return research.brief(conn, brief_id)

    def brief_records(self, topic_id: int | None = None, limit: int = 500) -> list[research.Brief]:
        with self.reading() as conn:
            return research.brief_records(conn, topic_id, limit)

    def escalations_of(self, brief_id: int) -> list[int]:
        with self.reading() as conn:
            return research.escalations_of(conn, brief_id)

    # --- status screen, spend chart and alerts (issue 13) -----------------------------------

    def status(self, recent: int = 10) -> Any:
        """Held reservations, pending approvals, poisoned tasks and the last refusals
        (an ``arbiter.ledger.status.LedgerStatus``)."""
        from arbiter.ledger.status import ledger_status

        with self.reading() as conn:
            return ledger_status(conn, recent)

    def spend_by_day(self, days: int) -> dict[str, dict[str, float]]:
        """Settled USD per local day (the last ``days``, today included) and provider."""
        from arbiter.ledger.status import spend_by_day

        now = self.clock()
        since = day_start(now, self.zone, max(days, 1) - 1)
        last = now.astimezone(self.zone).date()
        first = last - timedelta(days=max(days, 1) - 1)
        with self.reading() as conn:
            return spend_by_day(conn, first, last, self.zone, since)

    def tasks_today(self) -> dict[str, int]:
        """Tasks created since local midnight, counted by status."""
        from arbiter.ledger.status import tasks_since

        with self.reading() as conn:
            return tasks_since(conn, day_start(self.clock(), self.zone))

    def claim_alert(self, key: str, kind: str, text: str) -> bool:
        """Claim an alert's key before posting it; False when it was claimed already."""
        from arbiter.ledger import alerts

        with self.transaction() as conn:
            return alerts.claim(conn, key, kind, text, self.now())

    def finish_alert(self, key: str, *, sent: bool, attempts: int, error: str | None) -> None:
        from arbiter.ledger import alerts

        with self.transaction() as conn:
            alerts.finish(conn, key, sent=sent, attempts=attempts, error=error, now=self.now())

    def record_alert(
        self, key: str, kind: str, text: str, *, sent: bool, attempts: int, error: str | None
    ) -> None:
        """Record an alert that was posted without a claim (one write)."""
        from arbiter.ledger import alerts

        with self.transaction() as conn:
            alerts.record(
                conn, key, kind, text, sent=sent, attempts=attempts, error=error, now=self.now()
            )

    def recent_alerts(self, limit: int = 20) -> list[Any]:
        """The newest alert records first (``arbiter.ledger.alerts.AlertRecord``)."""
        from arbiter.ledger import alerts

        with self.reading() as conn:
            return alerts.recent(conn, limit)

    # --- scoped halts (issue 13, part 2) ------------------------------------------------------

    def set_halt(
        self, scope: str, on: bool, reason: str | None = None, by: str | None = None
    ) -> list[tuple[str, int, str]]:
        """Turn one scope of the kill switch on or off; returns the calls already in flight
        that it covers (task id, attempt, tier), which finish. See ``halts``."""
        with self.serialized() as conn:
            return halts.set_halt(conn, scope, on, reason, by, self.now())

    def set_aside(self, task_id: str, attempt: int, tier: str, reason: str) -> None:
        """A worker met a halt before the call: free the attempt's reservation and hold
        the task, queued, until its tier resumes."""
        now = self.now()
        with self.transaction() as conn:
            reservations.close_held(conn, task_id, attempt, "released", reason, now)
            reservations.update_task(conn, task_id, now, status="queued", error=reason)
            halts.set_aside(conn, task_id, attempt, tier, now)

    def halted_tasks(self) -> list[tuple[str, int, str]]:
        """The tasks set aside by a halt: (task id, attempt, tier)."""
        with self.reading() as conn:
            return halts.waiting(conn)

    def claim_resumable(self) -> list[tuple[str, int, str, dict[str, Any]]]:
        """Take the set-aside tasks no halt covers now: (task id, attempt, tier, payload)."""
        with self.transaction() as conn:
            return halts.claim_resumable(conn)

    def unclaim_resumable(self, task_id: str, attempt: int, tier: str) -> None:
        """Set a claimed task aside again (it could not be published)."""
        with self.transaction() as conn:
            halts.unclaim(conn, task_id, attempt, tier, self.now())

    # --- the studio's notes index (issue 12; arbiter.ledger.notes) -------------------------

    def note_files(self) -> dict[str, notes.IndexedFile]:
        """What the notes index holds, by path relative to the notes folder."""
        with self.reading() as conn:
            return notes.files(conn)

    def put_note(self, entry: notes.IndexedFile, passages: Sequence[str]) -> None:
        """Index one note (replacing its earlier passages)."""
        with self.transaction() as conn:
            notes.put(conn, entry, passages, self.now())

    def touch_note(self, path: str, mtime_ns: int, size: int) -> None:
        """A note's stat changed but its content did not."""
        with self.transaction() as conn:
            notes.touch(conn, path, mtime_ns, size)

    def drop_notes(self, paths: Sequence[str]) -> None:
        """Forget notes that left the folder."""
        with self.transaction() as conn:
            notes.drop(conn, paths)

    def search_notes(self, query: str, k: int = 3) -> list[notes.Hit]:
        """The ``k`` passages that best match ``query`` (any text: it is reduced to words)."""
        with self.reading() as conn:
            return notes.search(conn, notes.terms(query), k)
