"""The daily cost summary: the day's spend by provider against the policy's caps, and what
happened to the day's tasks, as one webhook message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from arbiter.alerts.messages import Alert
from arbiter.lang.caps import Cap, limit_of


@dataclass(frozen=True, slots=True)
class DayFigures:
    """What the summary says, read from the ledger at one instant."""

    day: date
    zone: str
    spend_by_provider: dict[str, float]  # settled USD today
    budget: dict[str, Any]  # the budget facts now (settled plus held)
    tasks: dict[str, int]  # tasks created today, by status
    pending_approvals: int
    poisoned: int
    caps: list[Cap] = field(default_factory=list)


def gather(ledger: Any, caps: Sequence[Cap]) -> DayFigures:
    """Today's figures from ``ledger`` (an ``arbiter.ledger.Ledger``), by its clock."""
    today = ledger.clock().astimezone(ledger.zone).date()
    by_day = ledger.spend_by_day(1)
    status = ledger.status(recent=0)
    return DayFigures(
        day=today,
        zone=ledger.zone.key,
        spend_by_provider=by_day.get(today.isoformat(), {}),
        budget=ledger.budget_facts(),
        tasks=ledger.tasks_today(),
        pending_approvals=status.pending_approvals,
        poisoned=status.poisoned_count,
        caps=list(caps),
    )


def compose(figures: DayFigures) -> Alert:
    """The summary message; its key makes it go once a day."""
    spent = sum(figures.spend_by_provider.values())
    lines = [f"📊 sovereign daily summary for {figures.day} ({figures.zone})"]
    lines.append(f"spend today: ${spent:.2f}" + _against(figures, "daily_spend_usd"))
    for provider, usd in sorted(figures.spend_by_provider.items(), key=lambda p: -p[1]):
        lines.append(f"  {provider}: ${usd:.2f}")
    month = float(figures.budget.get("monthly_spend_usd") or 0.0)
    lines.append(f"spend this month: ${month:.2f}" + _against(figures, "monthly_spend_usd"))
    total = sum(figures.tasks.values())
    if total:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(figures.tasks.items()))
        lines.append(f"tasks today: {total} ({counts})")
    else:
        lines.append("tasks today: none")
    if figures.pending_approvals:
        lines.append(f"waiting for approval: {figures.pending_approvals}")
    if figures.poisoned:
        lines.append(f"poisoned tasks: {figures.poisoned}")
    return Alert(f"summary:{figures.day}", "summary", "\n".join(lines))


def _against(figures: DayFigures, fact: str) -> str:
    cap = limit_of(figures.caps, fact)
    if cap is None:
        return ""
    used = float(figures.budget.get(fact) or 0.0)
    share = f", {used / cap.limit:.0%} used" if cap.limit > 0 else ""
    return f" of a ${cap.limit:.2f} cap (rule {cap.rule}{share})"
