"""The pre-dispatch gate: facts → decision → reservation → audit record, in one transaction.

``Gate.admit`` runs inside the ledger's serialized transaction: it reads the budget, asks
the policy, prices the route, and — when the verdict admits the task — holds a reservation
sized by the route's upper bound, then writes the decision record and the task row. Two
admissions anywhere (other processes, other machines on PostgreSQL) never interleave, so a
cap written in a rule holds exactly.

Choices worth knowing:

- A throttled task's reservation is taken now, at decision time, and held through its
  delay (its deadline is the TTL plus the delay). The rules admitted it against today's
  budget; reserving later would let the budget move under a decision already made.
- A cloud route without a price is never dispatched: the decision is recorded as a deny
  (decided by ``prices``) whose reason names the price file.
- When the kill switch is on, the verdict is ``halt`` (decided by ``system.halted``)
  whatever the policy says; ``system.halted`` is a fact the rules see too.
- The gate returns deny and halt as an ``Admission``; the Celery router raises for them.
- Rules see the strategy's route; a ``Reroute`` is priced (and reserved) at its own price,
  but rules did not see that price. Caps on ``route.estimated_cost_usd`` should not reroute
  to dearer models.
- An unreachable ledger raises ``LedgerUnavailable``: nothing is admitted without a record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from arbiter.errors import PriceMissing
from arbiter.lang.decision import Decision, TraceStep
from arbiter.lang.policy import Policy
from arbiter.ledger import Ledger
from arbiter.ledger.admission import AdmissionTx
from arbiter.ledger.budget import Snapshot
from arbiter.ledger.decisions import AdmissionRows, admission_rows
from arbiter.ledger.models import NANO
from arbiter.ledger.prices import PriceTable
from arbiter.ledger.windows import ROLLING_HOUR, Clock, Windows, time_facts, to_db, windows

ADMITTED = frozenset({"proceed", "throttle"})
# One-round-trip admissions: tries before the locked path; admissions in a row whose first
# try was refused before the gate concludes that other writers are busy; and how many
# locked admissions it then makes before trying again.
ONE_TRIP_TRIES = 2
REFUSED_IN_A_ROW = 2
LOCKED_AFTER_MISS = 8
TASK_STATUS = {
    "proceed": "queued",
    "throttle": "queued",
    "approval": "parked",
    "deny": "blocked",
    "halt": "blocked",
}


def gate_decision(
    verdict: str,
    route: dict[str, Any] | None,
    candidate: str | None,
    decided_by: str,
    reason: str,
    check: str,
) -> Decision:
    """A decision the gate makes itself (a missing price, the kill switch)."""
    trace = (TraceStep(check, verdict == "proceed", reason),)
    return Decision(verdict, route, candidate, decided_by, reason, None, (), trace)


@dataclass(frozen=True)
class TaskRequest:
    """What the gate knows of a task before it is published."""

    task_id: str
    kind: str
    estimated_tokens: int
    max_tokens: int
    confidential: bool = False
    source: str | None = None
    depth: int = 0
    priority: int | str | None = None
    tags: Sequence[str] = ()
    topic: str | None = None
    attempt: int = 1
    local_confidence: float | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    approved: bool = False
    # The task id was made by this process a moment ago (a uuid4 `submit` drew): nothing
    # can be held for it yet.
    fresh_id: bool = False

    def facts(self) -> dict[str, Any]:
        """The ``task`` facts of the policy language."""
        return {
            "id": self.task_id,
            "kind": self.kind,
            "confidential": self.confidential,
            "depth": self.depth,
            "priority": self.priority,
            "source": self.source,
            "tags": list(self.tags),
            "attempt": self.attempt,
            "estimated_tokens": self.estimated_tokens,
            "max_tokens": self.max_tokens,
            "local_confidence": self.local_confidence,
            "topic": self.topic,
        }


@dataclass(frozen=True)
class Admission:
    """The gate's answer: the decision, and what was held or parked because of it."""

    task_id: str
    attempt: int
    decision: Decision
    verdict: str
    route: dict[str, Any] | None
    tier: str | None
    queue: str | None
    countdown_s: float | None
    reserved_usd: float
    parked: bool
    policy_version: str | None

    @property
    def admitted(self) -> bool:
        """True when the task may be published (proceed, or throttle after a delay)."""
        return self.verdict in ADMITTED


@dataclass(frozen=True, slots=True)
class KnownFacts:
    """Facts read at the end of an admission, and how long time alone leaves them true.

    Only a write can change them before ``until`` (when the rolling hour's oldest call
    drops out) or the end of the local day ``today``; every write moves the ledger's fact
    counter, which the one-round-trip admission checks under the lock.
    """

    snapshot: Snapshot
    today: date
    until: datetime  # naive UTC
    # SQLite: the admission connection that left them, and its data_version then (which
    # moves when any other connection commits).
    connection: int = -1
    data_version: int | None = None

    def valid_at(self, w: Windows) -> bool:
        return w.today == self.today and w.now < self.until


@dataclass
class _Priced:
    """What the enrich hook saw: the route it priced, or the price it could not find."""

    route: dict[str, Any] | None = None
    missing: PriceMissing | None = None
    key: tuple[Any, Any, Any] | None = None  # (provider, model, tier) of ``route``
    amount: int = 0  # its reservation, nano-dollars


def _price_key(route: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return route.get("provider"), route.get("model"), route.get("tier")


class Gate:
    """Admits tasks: one serialized transaction per decision, recorded whatever the verdict."""

    def __init__(
        self,
        ledger: Ledger,
        policy_provider: Callable[[], Policy],
        prices: PriceTable,
        host_facts: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None,
        clock: Clock | None = None,
        *,
        queues: Mapping[str, str] | None = None,
    ) -> None:
        self.ledger = ledger
        if ledger.prices is None:
            # Workers settle through the same ledger object: let it price calls the same way.
            ledger.prices = prices
        self.policy_provider = policy_provider
        self.prices = prices
        self.host_facts = host_facts or (lambda: {})
        self.clock: Clock = clock or ledger.clock
        self.queues = {"local": "local", "cloud": "cloud", **(queues or {})}
        # PostgreSQL admissions may go in one round trip (see ``_admit_in_one_trip``); SQLite
        # ones keep the facts they leave behind for the next (see ``_locked_snapshot``).
        self._one_trip = ledger.dialect == "postgresql"
        self._reuse_facts = not self._one_trip
        self._known: KnownFacts | None = None
        self._locked_left = 0
        self._refused_in_a_row = 0
        # How admissions went: "one_trip", "one_trip_refused" (a fact had moved), "locked";
        # and how many locked ones decided on the facts kept from the previous one, because
        # no other connection had committed ("kept_facts_quiet") or the fact counter had not
        # moved ("kept_facts"), or found them moved and read them again ("kept_facts_moved").
        self.paths: Counter[str] = Counter()

    def admit(self, request: TaskRequest) -> Admission:
        """Decide, reserve when admitted, park when approval is needed, and record it all."""
        policy = self.policy_provider()
        # Host probes may touch the network: gather them before taking the ledger's lock.
        host = self.host_facts()
        if self._one_trip and not request.approved and self._locked_left <= 0:
            admission = self._admit_in_one_trip(policy, host, request)
            if admission is not None:
                return admission
        with self.ledger.admission() as tx:
            now = self.clock()
            w = windows(now, self.ledger.zone)
            admission = self._admit(tx, policy, host, request, now, w)
            self.paths["locked"] += 1
            if self._one_trip:
                self._locked_left -= 1
                if self._locked_left <= 0:
                    tx.read_after = w  # the next admission may then go in one round trip
        if tx.fresh is not None:
            self._remember(tx.fresh, w, tx)
        return admission

    def _admit(
        self,
        tx: AdmissionTx,
        policy: Policy,
        host: Mapping[str, Mapping[str, Any]],
        request: TaskRequest,
        now: datetime,
        w: Windows,
    ) -> Admission:
        """The locked path: read the facts under the lock, decide, write."""
        snap = self._locked_snapshot(tx, request, w)
        if snap.own_held:
            # The same attempt passing the gate again replaces its earlier admission (the
            # snapshot already leaves that hold out).
            tx.close_held(
                request.task_id, request.attempt, "released", "admitted again", to_db(now)
            )
        waive: frozenset[str] = frozenset()
        if request.approved and tx.is_granted(request.task_id):
            waive = frozenset({"approval"})
        admission, rows = self._build(policy, host, request, snap, now, waive)
        tx.write(rows)
        if admission.parked:
            tx.request_approval(request.task_id, admission.decision.reason, to_db(now))
        if self._reuse_facts:
            # Kept only once the transaction has committed (see ``admit``): facts of a write
            # that rolled back could match a counter that others move later.
            tx.fresh = snap.after(rows.reservation, request.kind, tx.version())
        return admission

    def _locked_snapshot(self, tx: AdmissionTx, request: TaskRequest, w: Windows) -> Snapshot:
        """SQLite: the facts the previous admission left, when nothing has moved them since
        (the fact counter is where that admission left it, and the attempt holds nothing);
        otherwise, and on PostgreSQL's locked path, the facts read afresh."""
        if not self._reuse_facts:
            return tx.snapshot(w, request.task_id, request.attempt)
        known = self._known
        quiet = tx.data_version()
        if known is not None and not request.approved and known.valid_at(w):
            if (
                request.fresh_id
                and known.connection == tx.connection
                and known.data_version == quiet
            ):
                # This connection left them and no other has committed since: nothing can
                # have moved, and a task id drawn a moment ago holds nothing.
                self.paths["kept_facts_quiet"] += 1
                return known.snapshot
            version, own = tx.probe(request.task_id, request.attempt)
            if version == known.snapshot.version and not own:
                self.paths["kept_facts"] += 1
                return known.snapshot
            self.paths["kept_facts_moved"] += 1
        return tx.snapshot(w, request.task_id, request.attempt)

    def _admit_in_one_trip(
        self, policy: Policy, host: Mapping[str, Mapping[str, Any]], request: TaskRequest
    ) -> Admission | None:
        """PostgreSQL: decide from the facts the last admission read, write in one trip.

        The write happens only if no fact has changed since (the ledger's fact counter,
        which triggers move on every change, is where it was) and the attempt holds
        nothing; the same round trip reads the facts again. A refused write is retried
        once with those facts. When that fails too, or first tries keep being refused (a
        worker settles between every two admissions, other gates race), the locked path
        takes over for ``LOCKED_AFTER_MISS`` admissions: its two round trips then cost
        less than a refused try and a retry. None means: take the locked path.
        """
        for tries in range(ONE_TRIP_TRIES):
            now = self.clock()
            w = windows(now, self.ledger.zone)
            known = self._known
            if known is None or not known.valid_at(w):
                return None
            admission, rows = self._build(policy, host, request, known.snapshot, now)
            if admission.parked:
                return None  # parking writes an approval too: the locked path does that
            with self.ledger.admission() as tx:
                written = tx.checked_write(rows, known.snapshot.version, w)
            if tx.fresh is not None:
                self._remember(tx.fresh, w, tx)
            if written:
                self.paths["one_trip"] += 1
                if tries == 0:
                    self._refused_in_a_row = 0
                return admission
            self.paths["one_trip_refused"] += 1
            if tries == 0:
                self._refused_in_a_row += 1
                if self._refused_in_a_row >= REFUSED_IN_A_ROW:
                    break
        self._refused_in_a_row = 0
        self._locked_left = LOCKED_AFTER_MISS
        return None

    def _remember(self, snapshot: Snapshot, w: Windows, tx: AdmissionTx) -> None:
        until = datetime.max
        if snapshot.hour_oldest is not None:
            until = snapshot.hour_oldest + ROLLING_HOUR
        self._known = KnownFacts(snapshot, w.today, until, tx.connection, tx.seen_data_version)

    def _build(
        self,
        policy: Policy,
        host: Mapping[str, Mapping[str, Any]],
        request: TaskRequest,
        snap: Snapshot,
        now: datetime,
        waive: frozenset[str] = frozenset(),
    ) -> tuple[Admission, AdmissionRows]:
        """The decision on ``snap`` and the rows that record it."""
        stamp = to_db(now)
        version = str(policy.version)
        facts: dict[str, Any] = {
            "task": request.facts(),
            "budget": dict(snap.budget),
            "research": dict(snap.research),
            "local": dict(host.get("local") or {}),
            "cloud": dict(host.get("cloud") or {}),
            "time": time_facts(now, self.ledger.zone),
            "system": {"halted": snap.halted, "policy_version": version},
        }
        decision, amount_nusd = self._decide(policy, facts, waive, request)
        if snap.halted and decision.verdict != "halt":
            decision = gate_decision(
                "halt",
                _plain(decision.route),
                decision.candidate,
                "system.halted",
                f"the system is halted: {snap.halt_reason or 'no reason given'}",
                "system.halted",
            )
        verdict = str(decision.verdict)
        route = _plain(decision.route)
        tier = str(route.get("tier")) if route and route.get("tier") else None
        queue = self._queue(route, tier)
        countdown = float(decision.retry_after_s or 0) if verdict == "throttle" else None
        reservation: dict[str, Any] | None = None
        if verdict not in ADMITTED:
            amount_nusd = 0
        else:
            assert route is not None
            reservation = {
                "amount_nusd": amount_nusd,
                "tokens": max(0, request.estimated_tokens) + max(0, request.max_tokens),
                "tier": tier or "local",
                "provider": str(route.get("provider") or ""),
                "model": str(route.get("model") or ""),
                "expires_at": to_db(
                    now + self.ledger.reservation_ttl + timedelta(seconds=countdown or 0)
                ),
            }
        task_row, decision_row = self._rows(request, decision, version, facts, amount_nusd, queue)
        rows = admission_rows(
            request.task_id, request.attempt, stamp, reservation, task_row, decision_row
        )
        admission = Admission(
            task_id=request.task_id,
            attempt=request.attempt,
            decision=decision,
            verdict=verdict,
            route=route,
            tier=tier,
            queue=queue,
            countdown_s=countdown,
            reserved_usd=amount_nusd / NANO,
            parked=verdict == "approval",
            policy_version=version,
        )
        return admission, rows

    def _decide(
        self,
        policy: Policy,
        facts: dict[str, Any],
        waive: frozenset[str],
        request: TaskRequest,
    ) -> tuple[Decision, int]:
        """The policy's decision and the reservation its route needs (nano-dollars)."""
        priced = _Priced()

        def enrich(route: dict[str, Any]) -> dict[str, Any]:
            try:
                cost = self._estimate_nusd(route, request)
            except PriceMissing as exc:
                priced.missing = exc
                raise
            extra = {"estimated_cost_usd": cost / NANO}
            priced.route = {**route, **extra}
            priced.key, priced.amount = _price_key(route), cost
            return extra

        try:
            decision = policy.decide(facts, enrich=enrich, waive=waive)
            route = decision.route
            if not route:
                amount = 0
            elif priced.key is not None and _price_key(route) == priced.key:
                amount = priced.amount  # the route the rules saw, priced once
            else:
                amount = self._estimate_nusd(route, request)  # a Reroute
        except PriceMissing as exc:
            # Fail closed: a route nobody can price is refused, and the refusal is recorded.
            return self._refusal(exc), 0
        if priced.missing is not None:
            # The language swallowed the enrich error; the refusal still stands.
            return self._refusal(priced.missing), 0
        if priced.route is not None:
            facts["route"] = priced.route  # the snapshot shows the route the rules saw
        return decision, amount

    def _refusal(self, missing: PriceMissing) -> Decision:
        return gate_decision("deny", None, None, "prices", str(missing), "price of the route")

    def _estimate_nusd(self, route: Mapping[str, Any], request: TaskRequest) -> int:
        tier = route.get("tier")
        price = self.prices.price(
            str(route.get("provider") or ""),
            str(route.get("model") or ""),
            str(tier) if tier is not None else None,
        )
        return PriceTable.estimate_nusd(price, request.estimated_tokens, request.max_tokens)

    def _queue(self, route: dict[str, Any] | None, tier: str | None) -> str | None:
        if route is None:
            return None
        named = route.get("queue")
        if isinstance(named, str) and named:
            return named
        return self.queues.get(tier or "local")

    def _rows(
        self,
        request: TaskRequest,
        decision: Decision,
        version: str,
        facts: dict[str, Any],
        amount_nusd: int,
        queue: str | None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The task row and the decision record of one admission."""
        verdict = str(decision.verdict)
        task_row = {
            "kind": request.kind,
            "source": request.source,
            "status": TASK_STATUS.get(verdict, "blocked"),
            "queue": queue,
            "payload": request.payload,
            "error": None if verdict in ADMITTED else decision.reason,
            "confidential": request.confidential,
            "depth": request.depth,
            "topic": request.topic,
        }
        decision_row = {
            "policy_version": version,
            "verdict": verdict,
            "route": _plain(decision.route),
            "candidate": decision.candidate,
            "decided_by": decision.decided_by,
            "reason": decision.reason,
            "retry_after_s": decision.retry_after_s if verdict == "throttle" else None,
            "reserved_nusd": amount_nusd,
            # JSON columns: the engine's serializer turns tuples and sets into lists.
            "facts": facts,
            "trace": [step.to_dict() for step in decision.trace],
        }
        return task_row, decision_row


def _plain(route: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(route) if route is not None else None
