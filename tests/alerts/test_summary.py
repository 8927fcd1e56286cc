"""The daily cost summary, composed from the ledger at a fixed instant, and sent once a day."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from arbiter.alerts import Outbox
from arbiter.alerts.summary import compose, gather
from arbiter.lang.caps import policy_caps
from arbiter.ledger import Ledger
from arbiter.usage import Usage
from tests.alerts.webhook_server import WebhookServer
from tests.ledger.helpers import ManualClock

POLICY = """
rule DailyCap { when { route.tier == "cloud" and budget.daily_spend_usd > 5 } then Deny {} }
rule MonthlyCap { when { budget.monthly_spend_usd > 60 } then Deny {} }
"""


@pytest.fixture
def clock() -> ManualClock:
    # 18:00 in Paris on 10 March (UTC+1 in winter).
    return ManualClock(datetime(2026, 3, 10, 17, 0, tzinfo=UTC))


@pytest.fixture
def ledger(database_url: str, clock: ManualClock) -> Iterator[Ledger]:
    led = Ledger(database_url, timezone="Europe/Paris", clock=clock)
    led.upgrade()
    yield led
    led.close()


def _spend(ledger: Ledger, task: str, provider: str, usd: float) -> None:
    ledger.settle(task, 1, Usage(1000, 10), provider, "m", cost_usd=usd, tier="cloud")


def test_the_summary_says_the_days_spend_against_the_caps(
    ledger: Ledger, clock: ManualClock
) -> None:
    clock.set(datetime(2026, 3, 9, 12, 0, tzinfo=UTC))
    _spend(ledger, "yesterday", "openai", 9.0)
    clock.set(datetime(2026, 3, 9, 23, 30, tzinfo=UTC))  # 00:30 on the 10th in Paris
    _spend(ledger, "after-midnight", "openai", 0.5)
    clock.set(datetime(2026, 3, 10, 16, 0, tzinfo=UTC))
    _spend(ledger, "afternoon", "anthropic", 1.25)
    clock.set(datetime(2026, 3, 10, 17, 0, tzinfo=UTC))  # 18:00 in Paris
    figures = gather(ledger, policy_caps({"p.arb": POLICY}))
    assert figures.day.isoformat() == "2026-03-10"
    assert figures.spend_by_provider == {"anthropic": 1.25, "openai": 0.5}
    alert = compose(figures)
    assert alert.key == "summary:2026-03-10" and alert.kind == "summary"
    lines = alert.text.splitlines()
    assert lines[0] == "📊 sovereign daily summary for 2026-03-10 (Europe/Paris)"
    assert lines[1] == "spend today: $1.75 of a $5.00 cap (rule DailyCap, 35% used)"
    assert lines[2:4] == ["  anthropic: $1.25", "  openai: $0.50"]
    assert lines[4] == "spend this month: $10.75 of a $60.00 cap (rule MonthlyCap, 18% used)"
    assert lines[5].startswith("tasks today: ")


def test_the_summary_goes_once_a_day(ledger: Ledger, clock: ManualClock) -> None:
    hook = WebhookServer().start()
    try:
        outbox = Outbox(hook.url, ledger)
        assert outbox.deliver(compose(gather(ledger, [])))
        again = Outbox(hook.url, ledger)  # beat restarted, or a second beat fired
        assert not again.deliver(compose(gather(ledger, [])))
        clock.set(datetime(2026, 3, 11, 17, 0, tzinfo=UTC))
        assert again.deliver(compose(gather(ledger, [])))
    finally:
        hook.stop()
    firsts = [t.splitlines()[0] for t in hook.texts()]
    assert [line.split(" for ")[1] for line in firsts] == [
        "2026-03-10 (Europe/Paris)",
        "2026-03-11 (Europe/Paris)",
    ]
