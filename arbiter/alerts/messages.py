"""What is worth a message, and its words: halts, Alert actions, reached caps, poisoned tasks.

Each alert carries a key that says when two are the same news, so the outbox sends it once:

| alert | key | so it goes |
|---|---|---|
| a halt (a ``Halt`` action, or the kill switch) | rule, reason and local day | once a day per reason |
| a reached cap (a ``Deny`` whose rule compares a budget fact) | rule and local day | once a day |
| an ``Alert`` action | rule, task and attempt | once per task attempt |
| a poisoned task | task | once |
| the daily summary | local day | once a day |

A ``Halt`` with ``alert: false`` sends nothing; one with ``alert: "text"`` sends that text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from arbiter.lang.caps import Cap
from arbiter.lang.decision import Decision

HALT_ACTIONS = frozenset({"Halt", "HaltExecution"})
NOTIFYING = HALT_ACTIONS | {"Alert"}


@dataclass(frozen=True, slots=True)
class Alert:
    """One message for the webhook; ``key`` names the news it carries (see above)."""

    key: str
    kind: str  # "halt", "cap", "alert", "poisoned" or "summary"
    text: str
    # Claimed in the ledger before it is posted: news several processes may see (a cap, a
    # halt, the summary). An Alert action's key is one task attempt's, decided in one
    # process: it is only recorded after posting, one write instead of two.
    claim: bool = True


def worth_a_look(decision: Decision) -> bool:
    """Whether a decision may carry news (cheap: the decision path asks it)."""
    if decision.verdict in ("deny", "halt"):
        return True
    return any(f.action in NOTIFYING for f in decision.fired)


def from_decision(
    task_id: str,
    kind: str,
    attempt: int,
    decision: Decision,
    caps: Sequence[Cap],
    day: date,
    policy_version: str | None = None,
) -> list[Alert]:
    """The alerts one decision carries, in evaluation order, without repeats."""
    out: dict[str, Alert] = {}
    task = f"task {task_id} ({kind})"
    under = f", policy {policy_version}" if policy_version else ""
    by_rule = {c.rule: c for c in caps}
    halt_fired = False
    for fired in decision.fired:
        params = fired.params
        if fired.action in HALT_ACTIONS:
            halt_fired = True
            if params.get("alert") is False:
                continue
            reason = _text(params.get("reason")) or fired.rule
            scope = f" (scope {params['scope']})" if params.get("scope") else ""
            said = _text(params.get("alert")) if isinstance(params.get("alert"), str) else None
            key = f"halt:{day}:{fired.rule}:{reason}"
            out.setdefault(
                key,
                Alert(
                    key,
                    "halt",
                    f"🛑 sovereign halted work{scope}: {said or reason} (rule {fired.rule}"
                    f"{under}; first stopped: {task}). Not repeated today for this reason.",
                ),
            )
        elif fired.action == "Alert":
            message = _text(params.get("message")) or _text(params.get("reason")) or fired.rule
            key = f"alert:{fired.rule}:{task_id}:{attempt}"
            out.setdefault(
                key,
                Alert(
                    key,
                    "alert",
                    f"🔔 sovereign: {message} (rule {fired.rule}, {task})",
                    claim=False,
                ),
            )
        elif fired.action == "Deny" and fired.rule in by_rule:
            cap = by_rule[fired.rule]
            reason = _text(params.get("reason")) or fired.rule
            key = f"cap:{day}:{fired.rule}"
            limit = f"budget.{cap.fact} {cap.op} {cap.limit:g}"
            where = f" {cap.tier}" if cap.tier else ""
            out.setdefault(
                key,
                Alert(
                    key,
                    "cap",
                    f"💸 sovereign: cap reached: {reason} (rule {fired.rule}: {limit}{under}). "
                    f"Further{where} tasks it refuses today are not alerted; first refused: "
                    f"{task}.",
                ),
            )
    if decision.verdict == "halt" and not halt_fired:
        # The gate's own halt (the kill switch) when no rule of the policy fired one.
        rule = decision.decided_by or "system.halted"
        reason = decision.reason or "no reason given"
        key = f"halt:{day}:{rule}:{reason}"
        out[key] = Alert(
            key,
            "halt",
            f"🛑 sovereign is halted: {reason} (first stopped: {task}). "
            "Not repeated today for this reason.",
        )
    return list(out.values())


def poisoned(task_id: str, sentence: str) -> Alert:
    """A task that kept killing its worker and is never run again."""
    return Alert(f"poisoned:{task_id}", "poisoned", f"☠️ sovereign: {sentence}")


def _text(value: object) -> str | None:
    if value is None or value is False or value is True:
        return None
    return str(value)
