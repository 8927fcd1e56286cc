"""Budget windows: calendar day and month in the configured zone, the rolling hour."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from arbiter.ledger import Ledger
from arbiter.ledger.windows import time_facts, windows
from arbiter.usage import Usage
from tests.ledger.helpers import ManualClock

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def test_day_and_month_start_at_local_midnight() -> None:
    # 23:30 UTC on 31 March is already 1 April in Paris (UTC+2 in summer time).
    w = windows(datetime(2026, 3, 31, 23, 30, tzinfo=UTC), PARIS)
    assert w.day_start == datetime(2026, 3, 31, 22, 0)
    assert w.month_start == datetime(2026, 3, 31, 22, 0)
    assert w.hour_start == datetime(2026, 3, 31, 22, 30)


def test_time_facts_are_local() -> None:
    facts = time_facts(datetime(2026, 1, 5, 3, 15, tzinfo=UTC), NEW_YORK)
    assert facts == {"hour": 22, "weekday": "sun", "date": "2026-01-04"}


@pytest.fixture
def clock() -> ManualClock:
    # 23:50 in Paris on 10 March (UTC+1 in winter).
    return ManualClock(datetime(2026, 3, 10, 22, 50, tzinfo=UTC))


@pytest.fixture
def ledger(sqlite_url: str, clock: ManualClock) -> Iterator[Ledger]:
    ledger = Ledger(sqlite_url, timezone="Europe/Paris", clock=clock)
    ledger.upgrade()
    yield ledger
    ledger.close()


def _spend(ledger: Ledger, task: str, usd: float, tokens: int = 1000) -> None:
    usage = Usage(tokens, 0, convention="separate")
    ledger.settle(task, 1, usage, "anthropic", "claude-sonnet-4-5", cost_usd=usd)


def test_midnight_in_paris_starts_a_new_day(ledger: Ledger, clock: ManualClock) -> None:
    _spend(ledger, "before-midnight", 2.0)
    assert ledger.budget_facts()["daily_spend_usd"] == pytest.approx(2.0)
    clock.advance(minutes=9, seconds=59)  # 23:59:59 Paris
    assert ledger.budget_facts()["daily_spend_usd"] == pytest.approx(2.0)
    clock.advance(seconds=1)  # 00:00:00 Paris, still 23:00 UTC
    facts = ledger.budget_facts()
    assert facts["daily_spend_usd"] == 0.0
    assert facts["daily_cloud_calls"] == 0
    assert facts["monthly_spend_usd"] == pytest.approx(2.0)
    # The rolling hour does not care about midnight.
    assert facts["hourly_tokens"] == 1000


def test_rolling_hour(ledger: Ledger, clock: ManualClock) -> None:
    clock.set(datetime(2026, 3, 10, 9, 0, tzinfo=UTC))
    _spend(ledger, "a", 0.1, tokens=700)
    clock.advance(minutes=30)
    _spend(ledger, "b", 0.1, tokens=300)
    assert ledger.budget_facts()["hourly_tokens"] == 1000
    clock.advance(minutes=30)  # exactly 60 minutes after the first call: still inside
    assert ledger.budget_facts()["hourly_tokens"] == 1000
    clock.advance(seconds=1)
    assert ledger.budget_facts()["hourly_tokens"] == 300
    assert ledger.budget_facts()["daily_tokens"] == 1000


def test_month_rolls_over_in_new_york(sqlite_url: str) -> None:
    clock = ManualClock(datetime(2026, 5, 1, 3, 59, tzinfo=UTC))  # 23:59 on 30 April in NY
    ledger = Ledger(sqlite_url, timezone="America/New_York", clock=clock)
    ledger.upgrade()
    _spend(ledger, "april", 1.5)
    assert ledger.budget_facts()["monthly_spend_usd"] == pytest.approx(1.5)
    clock.advance(minutes=1)  # 00:00 on 1 May in New York
    facts = ledger.budget_facts()
    assert (facts["monthly_spend_usd"], facts["daily_spend_usd"]) == (0.0, 0.0)
    ledger.close()


def test_rolling_hour_edge_inside_a_minute(ledger: Ledger, clock: ManualClock) -> None:
    clock.set(datetime(2026, 3, 10, 9, 0, 30, tzinfo=UTC))
    _spend(ledger, "edge", 0.1, tokens=500)
    clock.advance(seconds=10)
    _spend(ledger, "later", 0.1, tokens=250)
    clock.set(datetime(2026, 3, 10, 10, 0, 30, tzinfo=UTC))
    assert ledger.budget_facts()["hourly_tokens"] == 750
    clock.advance(seconds=1)
    assert ledger.budget_facts()["hourly_tokens"] == 250
    clock.advance(seconds=10)
    assert ledger.budget_facts()["hourly_tokens"] == 0
    ledger.expire_reservations()  # prunes minute totals no hour can reach
    assert ledger.budget_facts()["daily_tokens"] == 750


def test_changing_the_zone_recounts_days(sqlite_url: str, clock: ManualClock) -> None:
    paris = Ledger(sqlite_url, timezone="Europe/Paris", clock=clock)
    paris.upgrade()
    _spend(paris, "late", 1.0)  # 23:50 in Paris, 18:50 in New York, same day both
    clock.advance(minutes=20)  # 00:10 in Paris on the 11th, 19:10 in New York on the 10th
    assert paris.budget_facts()["daily_spend_usd"] == 0.0
    paris.close()
    new_york = Ledger(sqlite_url, timezone="America/New_York", clock=clock)
    new_york.upgrade()  # no day rows for this zone yet: rebuilt from the calls
    assert new_york.budget_facts()["daily_spend_usd"] == pytest.approx(1.0)
    assert new_york.budget_facts()["hourly_tokens"] == 1000
    new_york.close()
