"""Backoff with full jitter and Retry-After parsing."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.retry import backoff_delay, next_delay, parse_retry_after, retry_after_from_headers


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    base=st.floats(min_value=0.01, max_value=100),
    cap=st.floats(min_value=0.01, max_value=10_000),
    seed=st.integers(),
)
def test_delay_stays_within_the_capped_exponential_window(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    delay = backoff_delay(attempt, base, cap, random.Random(seed))
    assert 0.0 <= delay <= min(cap, base * 2.0 ** min(attempt, 64))


class Extremes:
    """An rng that returns the top of each range, to see the window itself."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_window_doubles_until_the_cap() -> None:
    windows = [backoff_delay(n, 2.0, 30.0, Extremes()) for n in range(6)]
    assert windows == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_jitter_spreads_delays() -> None:
    rng = random.Random(7)
    delays = {round(backoff_delay(5, 1.0, 60.0, rng), 6) for _ in range(50)}
    assert len(delays) > 40


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError):
        backoff_delay(-1, 1.0, 10.0)
    with pytest.raises(ValueError):
        backoff_delay(0, 0.0, 10.0)


def test_provider_retry_after_wins_but_is_capped() -> None:
    assert next_delay(0, 2.0, 300.0, retry_after_s=12.0) == 12.0
    assert next_delay(0, 2.0, 300.0, retry_after_s=9999.0) == 300.0
    assert next_delay(3, 2.0, 300.0, retry_after_s=None, rng=Extremes()) == 16.0


def test_retry_after_formats() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30.0)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0


def test_headers_prefer_milliseconds() -> None:
    assert retry_after_from_headers({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_from_headers({"retry-after": "9"}) == 9.0
    assert retry_after_from_headers({}) is None
    assert retry_after_from_headers(None) is None
