"""The pre-dispatch gate: facts → decision → reservation → audit record.

``decide`` is a pure function: the request, the snapshot of facts, the policy, the prices
and the host facts go in; the admission and the rows that record it come out. ``Gate``
runs it inside the ledger's serialized transaction (``arbiter.ledger.admission`` says
why that keeps every cap exact).

What the gate decides itself, whatever the policy says:

- A route nobody can price is refused (decided by ``prices``).
- A ``Reroute`` is priced at the model it reroutes to, and the rules run a second time
  with that price as ``route.estimated_cost_usd``; the more severe verdict of the two
  stands, so a cap rule sees the cost the reservation will hold.
- ``max_tokens`` above the route model's output limit is refused (``output limit``).
- A confidential task is never admitted (nor parked) for a route off the studio's
  machines: the gate records a deny decided by ``confidential``, naming the rule or
  strategy branch that tried it.
- When a halt covers the task, the verdict is ``halt``: scope ``all`` covers every task
  (decided by ``system.halted``), scope ``cloud`` or ``local`` the tasks whose route has
  that tier (decided by ``system.halted_scopes``).
- A task that runs on the studio's machines by nature (``on_premises``: a commit) is
  refused a route off them, like confidential work.
- A throttled task's reservation is taken now and held through its delay.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from arbiter.errors import PriceMissing
from arbiter.lang.decision import Decision, TraceStep
from arbiter.lang.policy import Policy
from arbiter.ledger import Ledger
from arbiter.ledger.budget import Snapshot
from arbiter.ledger.decisions import AdmissionRows, admission_rows
from arbiter.ledger.models import NANO
from arbiter.ledger.prices import LOCAL_PROVIDERS, Price, PriceTable
from arbiter.ledger.windows import Clock, time_facts, to_db, windows

ADMITTED = frozenset({"proceed", "throttle"})
SEVERITY = {"proceed": 0, "throttle": 1, "approval": 2, "deny": 3, "halt": 4}
TASK_STATUS = {
    "proceed": "queued",
    "throttle": "queued",
    "approval": "parked",
    "deny": "blocked",
    "halt": "blocked",
}
HostFacts = Mapping[str, Mapping[str, Any]]
# Local providers, and the aliases the workers resolve to one of them.
ON_PREMISES = LOCAL_PROVIDERS | {"auto"}


@dataclass(frozen=True)
class TaskRequest:
    """What the gate knows of a task before it is published."""

    task_id: str
    kind: str
    estimated_tokens: int  # the input bound (see arbiter.bound), not a guess
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
    approved: bool = False  # claimed by the publisher; ``task.approved`` needs a real grant
    on_premises: bool = False  # not a model call (a commit): runs on a local worker only

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


@dataclass(frozen=True)
class Context:
    """What ``decide`` needs besides the request and the snapshot."""

    policy: Policy
    prices: PriceTable
    host: HostFacts
    now: datetime
    zone: ZoneInfo
    reservation_ttl: timedelta
    queues: Mapping[str, str]
    granted: bool = False  # a person granted this parked task: "approval" is waived


def gate_decision(
    verdict: str,
    route: dict[str, Any] | None,
    decided_by: str,
    reason: str,
    base: Decision | None = None,
) -> Decision:
    """A decision the gate makes itself, keeping what the policy fired and traced."""
    step = TraceStep(decided_by, verdict == "proceed", reason)
    if base is None:
        return Decision(verdict, route, None, decided_by, reason, None, (), (step,))
    return Decision(
        verdict, route, base.candidate, decided_by, reason, None, base.fired, (*base.trace, step)
    )


def decide(request: TaskRequest, snap: Snapshot, ctx: Context) -> tuple[Admission, AdmissionRows]:
    """The admission of ``request`` on the facts ``snap``, and the rows that record it."""
    version = str(ctx.policy.version)
    facts: dict[str, Any] = {
        "task": request.facts(),
        "budget": dict(snap.budget),
        "research": dict(snap.research),
        "local": dict(ctx.host.get("local") or {}),
        "cloud": dict(ctx.host.get("cloud") or {}),
        "time": time_facts(ctx.now, ctx.zone),
        "system": {
            "halted": snap.halted,
            "halted_scopes": snap.halted_scopes,
            "policy_version": version,
        },
    }
    facts["task"]["approved"] = ctx.granted
    decision, amount = _policy_decision(request, facts, ctx)
    decision = _gate_checks(request, snap, decision, ctx.prices)
    verdict = str(decision.verdict)
    route = dict(decision.route) if decision.route is not None else None
    tier = str(route["tier"]) if route and route.get("tier") else None
    queue = _queue(route, tier, ctx.queues)
    countdown = float(decision.retry_after_s or 0) if verdict == "throttle" else None
    reservation: dict[str, Any] | None = None
    if verdict not in ADMITTED or route is None:
        amount = 0
    else:
        reservation = {
            "amount_nusd": amount,
            "tokens": max(0, request.estimated_tokens) + max(0, request.max_tokens),
            "tier": tier or "local",
            "provider": str(route.get("provider") or ""),
            "model": str(route.get("model") or ""),
            "expires_at": to_db(ctx.now + ctx.reservation_ttl + timedelta(seconds=countdown or 0)),
        }
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
        "route": route,
        "candidate": decision.candidate,
        "decided_by": decision.decided_by,
        "reason": decision.reason,
        "retry_after_s": decision.retry_after_s if verdict == "throttle" else None,
        "reserved_nusd": amount,
        "facts": facts,
        "trace": [step.to_dict() for step in decision.trace],
    }
    rows = admission_rows(
        request.task_id, request.attempt, to_db(ctx.now), reservation, task_row, decision_row
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
        reserved_usd=amount / NANO,
        parked=verdict == "approval",
        policy_version=version,
    )
    return admission, rows


def _price(prices: PriceTable, route: Mapping[str, Any]) -> Price:
    tier = route.get("tier")
    return prices.price(
        str(route.get("provider") or ""),
        str(route.get("model") or ""),
        str(tier) if tier is not None else None,
    )


def _bound_nusd(prices: PriceTable, route: Mapping[str, Any], request: TaskRequest) -> int:
    return PriceTable.estimate_nusd(
        _price(prices, route), request.estimated_tokens, request.max_tokens
    )


def _policy_decision(
    request: TaskRequest, facts: dict[str, Any], ctx: Context
) -> tuple[Decision, int]:
    """The policy's decision, and the reservation (nano-dollars) its final route needs."""
    waive = frozenset({"approval"}) if ctx.granted else frozenset()
    seen: dict[str, Any] = {}

    def enrich(route: dict[str, Any]) -> dict[str, Any]:
        try:
            cost = _bound_nusd(ctx.prices, route, request)
        except PriceMissing as exc:
            seen["missing"] = exc
            raise
        seen["route"], seen["cost"] = route, cost
        extra = {"estimated_cost_usd": cost / NANO}
        facts["route"] = {**route, **extra}  # the record shows the route the rules saw
        return extra

    try:
        decision = ctx.policy.decide(facts, enrich=enrich, waive=waive)
    except PriceMissing as exc:
        return _refusal(exc, None), 0
    if "missing" in seen:  # the language swallows enrich errors; the refusal stands
        return _refusal(seen["missing"], decision), 0
    route = decision.route
    if not route:
        return decision, 0
    if "route" in seen and _same_model(route, seen["route"]):
        return decision, int(seen["cost"])
    # A Reroute: price it, and run the rules again with that price.
    try:
        cost = _bound_nusd(ctx.prices, route, request)
    except PriceMissing as exc:
        return _refusal(exc, decision), 0
    again = ctx.policy.decide(
        facts, enrich=lambda _: {"estimated_cost_usd": cost / NANO}, waive=waive
    )
    note = TraceStep(
        "rules at the rerouted price",
        SEVERITY[again.verdict] <= SEVERITY[decision.verdict],
        f"{route.get('provider')}/{route.get('model')} reserves {cost / NANO:.9f} USD; "
        f"the rules then say {again.verdict}",
    )
    if SEVERITY[again.verdict] > SEVERITY[decision.verdict]:
        return replace(
            decision,
            verdict=again.verdict,
            decided_by=again.decided_by,
            reason=again.reason,
            retry_after_s=again.retry_after_s,
            fired=decision.fired + again.fired,
            trace=(*decision.trace, note, *again.trace),
        ), cost
    return replace(decision, trace=(*decision.trace, note)), cost


def _same_model(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in ("tier", "provider", "model"))


def _refusal(missing: PriceMissing, base: Decision | None) -> Decision:
    return gate_decision("deny", None, "prices", str(missing), base)


def _gate_checks(
    request: TaskRequest, snap: Snapshot, decision: Decision, prices: PriceTable
) -> Decision:
    """The gate's own refusals, applied to whatever the policy decided."""
    route = dict(decision.route) if decision.route is not None else None
    tier = str(route["tier"]) if route and route.get("tier") else None
    scope = "all" if "all" in snap.halts else tier if tier in snap.halts else None
    if scope is not None and decision.verdict != "halt":
        what = "the system is halted" if scope == "all" else f"{scope} work is halted"
        reason = f"{what}: {snap.halts[scope] or 'no reason given'}"
        by = "system.halted" if scope == "all" else "system.halted_scopes"
        return gate_decision("halt", route, by, reason, decision)
    if route is None or decision.verdict not in (*ADMITTED, "approval"):
        return decision
    where = f"{route.get('provider')}/{route.get('model')}"
    if request.on_premises and not _on_premises(route):
        reason = (
            f"task {request.task_id} ({request.kind}) runs on the studio's own machines, "
            f"but {_who_routed(decision)} sent it to {where} ({route.get('tier')}); "
            f"route {request.kind} tasks to the local tier"
        )
        return gate_decision("deny", None, "on premises", reason, decision)
    if request.confidential and not _on_premises(route):
        reason = (
            f"task {request.task_id} is confidential and may not leave the studio's machines, "
            f"but {_who_routed(decision)} sent it to {where} ({route.get('tier')}); "
            "route confidential work to a local model"
        )
        return gate_decision("deny", None, "confidential", reason, decision)
    limit = _price(prices, route).max_output
    if limit is not None and request.max_tokens > limit:
        reason = (
            f"max_tokens {request.max_tokens:,} is above the output limit of {where} "
            f"({limit:,} tokens); ask for at most {limit:,}"
        )
        return gate_decision("deny", None, "output limit", reason, decision)
    return decision


def _on_premises(route: Mapping[str, Any]) -> bool:
    """A route to the local tier and a local provider (a local server's own network is
    checked by its backend)."""
    provider = route.get("provider")
    return route.get("tier") == "local" and (provider is None or provider in ON_PREMISES)


def _who_routed(decision: Decision) -> str:
    for fired in decision.fired:
        if fired.action == "Reroute":
            return f"rule {fired.rule} (Reroute)"
    if decision.candidate:
        return f"the routing strategy's {decision.candidate} branch"
    return "the routing strategy"


def _queue(route: dict[str, Any] | None, tier: str | None, queues: Mapping[str, str]) -> str | None:
    if route is None:
        return None
    named = route.get("queue")
    if isinstance(named, str) and named:
        return named
    return queues.get(tier or "local")


class Gate:
    """Admits tasks: one serialized transaction per decision, recorded whatever the verdict."""

    def __init__(
        self,
        ledger: Ledger,
        policy_provider: Callable[[], Policy],
        prices: PriceTable,
        host_facts: Callable[[], HostFacts] | None = None,
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

    def admit(self, request: TaskRequest) -> Admission:
        """Decide, reserve when admitted, park when approval is needed, and record it all."""
        policy = self.policy_provider()
        # Host probes may touch the network: gather them before taking the ledger's lock.
        host = self.host_facts()
        with self.ledger.admission() as tx:
            now = self.clock()
            snap = tx.snapshot(windows(now, self.ledger.zone), request.task_id, request.attempt)
            stamp = to_db(now)
            if snap.own_held:
                # The same attempt passing the gate again replaces its earlier admission.
                tx.close_held(request.task_id, request.attempt, "released", "admitted again", stamp)
            granted = request.approved and tx.is_granted(request.task_id)
            ctx = Context(
                policy, self.prices, host, now, self.ledger.zone,
                self.ledger.reservation_ttl, self.queues, granted,
            )  # fmt: skip
            admission, rows = decide(request, snap, ctx)
            tx.write(rows)
            if admission.parked:
                tx.request_approval(request.task_id, admission.decision.reason, stamp)
        return admission
